package main

import (
	"fmt"
	"os"

	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// runControllerManager runs kube-controller-manager in this (child) process
// with the arguments the parent chose.
func runControllerManager(args []string) int {
	cmd := controllermanager.NewControllerManagerCommand()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "kube-controller-manager: %v\n", err)
		return 1
	}
	return 0
}
