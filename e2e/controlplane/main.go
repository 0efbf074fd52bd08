// kiln-controlplane runs a real Kubernetes control plane for kiln's tests:
// embedded etcd, kube-apiserver and the kube-controller-manager controllers the
// tests rely on (garbage collector, namespace deletion, ServiceAccounts), all
// built from the pinned k8s.io modules in go.mod. No kubelet, no scheduler.
//
// Usage:
//
//	kiln-controlplane --dir DIR [--user NAME[:GROUP,...]]...
//
// It writes DIR/kubeconfig (one context per user; "admin" is in
// system:masters and is the current context), DIR/ca.crt and DIR/tokens.csv,
// prints "ready <https-url>" on stdout once every API group is served and the
// controllers run, and stops (removing nothing) on SIGTERM or SIGINT, or when
// its stdin closes, so a test harness that dies takes the control plane with it.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	// The controller manager runs as a child of the same binary: kube-apiserver
	// and kube-controller-manager register process-global flags and metrics, so
	// they cannot share one process.
	if len(os.Args) > 1 && os.Args[1] == controllerManagerCommand {
		os.Exit(runControllerManager(os.Args[2:]))
	}
	opts, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln-controlplane: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opts.watchStdin {
		ctx = stopOnStdinClose(ctx)
	}
	if err := run(ctx, opts); err != nil {
		fmt.Fprintf(os.Stderr, "kiln-controlplane: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	dir        string
	users      []user
	watchStdin bool
}

type user struct {
	name   string
	groups []string
}

func parseOptions(args []string) (options, error) {
	opts := options{watchStdin: true}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		switch arg {
		case "--dir":
			v, err := value()
			if err != nil {
				return opts, err
			}
			opts.dir = v
		case "--user":
			v, err := value()
			if err != nil {
				return opts, err
			}
			u, err := parseUser(v)
			if err != nil {
				return opts, err
			}
			opts.users = append(opts.users, u)
		case "--no-stdin":
			opts.watchStdin = false
		default:
			return opts, fmt.Errorf("unknown argument %q (usage: --dir DIR [--user NAME[:GROUP,...]]... [--no-stdin])", arg)
		}
	}
	if opts.dir == "" {
		return opts, fmt.Errorf("--dir is required")
	}
	return opts, nil
}

func parseUser(spec string) (user, error) {
	name, groups, _ := strings.Cut(spec, ":")
	if name == "" || name == "admin" || strings.ContainsAny(name, ",\"\n") {
		return user{}, fmt.Errorf("bad --user %q: want NAME[:GROUP,...], NAME not admin", spec)
	}
	u := user{name: name}
	if groups != "" {
		u.groups = strings.Split(groups, ",")
	}
	return u, nil
}

// stopOnStdinClose ends the context when stdin reaches EOF: the harness holds
// the write end, so its death (even by SIGKILL) stops the control plane.
func stopOnStdinClose(parent context.Context) context.Context {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		cancel()
	}()
	return ctx
}
