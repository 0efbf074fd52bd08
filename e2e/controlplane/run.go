package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const controllerManagerCommand = "controller-manager"

// The controllers kiln's tests rely on: owner references are collected, a
// deleted namespace is emptied (finalizers honoured) and removed, and each
// namespace gets its default ServiceAccount and the kube-root-ca.crt ConfigMap.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
}

// How long the control plane may take to serve every API group. A cold start
// on 2 busy cores takes a few seconds; the bound only turns a hang into an error.
const readyTimeout = 120 * time.Second

func run(ctx context.Context, opts options) error {
	dir, err := filepath.Abs(opts.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files, err := writePKI(dir)
	if err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	creds, err := writeTokens(dir, opts.users)
	if err != nil {
		return fmt.Errorf("writing tokens: %w", err)
	}

	etcd, etcdURL, err := startEtcd(dir)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	port, err := freePort()
	if err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	apiErr := make(chan error, 1)
	go func() {
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(apiserverArgs(dir, files, etcdURL, port))
		apiErr <- cmd.Execute()
	}()

	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, files.caPEM, creds); err != nil {
		return err
	}
	if err := waitReady(ctx, server, files.caPEM, creds[0].token, apiErr); err != nil {
		return err
	}

	manager, err := startControllerManager(dir, kubeconfig, files)
	if err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	managerErr := make(chan error, 1)
	go func() { managerErr <- manager.Wait() }()

	fmt.Printf("ready %s\n", server)
	select {
	case <-ctx.Done():
		_ = manager.Process.Kill()
		return nil
	case err := <-apiErr:
		_ = manager.Process.Kill()
		return fmt.Errorf("kube-apiserver stopped: %v", err)
	case err := <-managerErr:
		return fmt.Errorf("kube-controller-manager stopped: %v", err)
	}
}

func apiserverArgs(dir string, files pkiFiles, etcdURL string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + files.serverCert,
		"--tls-private-key-file=" + files.serverKey,
		"--client-ca-file=" + files.caCert,
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + files.saPublic,
		"--service-account-signing-key-file=" + files.saPrivate,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--profiling=false",
		"--logging-format=text",
		"--v=0",
	}
}

func startControllerManager(dir, kubeconfig string, files pkiFiles) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	list := ""
	for i, c := range controllers {
		if i > 0 {
			list += ","
		}
		list += c
	}
	cmd := exec.Command(self, controllerManagerCommand,
		"--kubeconfig="+kubeconfig,
		"--controllers="+list,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file="+files.saPrivate,
		"--root-ca-file="+files.caCert,
		"--use-service-account-credentials=false",
		"--logging-format=text",
		"--v=0",
	)
	log, err := os.Create(filepath.Join(dir, "controller-manager.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout = log
	cmd.Stderr = log
	// The child dies with this process, however it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Tests write little and never keep the data: skip fsync's cost.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, clientURL.String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(readyTimeout):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after %s", readyTimeout)
	}
}

// waitReady polls /readyz until every post-start hook (RBAC bootstrap roles,
// CRD and aggregation controllers) reports ready.
func waitReady(ctx context.Context, server string, caPEM []byte, token string, apiErr <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-apiErr:
			return fmt.Errorf("kube-apiserver stopped before it was ready: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s", readyTimeout)
		}
	}
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process could
// take it before it is bound again; on loopback in a test that race is rare
// and shows as a clear bind error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
