// The pod sandbox ("pause") program of the local test node: it holds the pod's namespaces, reaps orphaned
// children (it is PID 1 when the pod shares its process namespace) and exits on SIGINT/SIGTERM. Built
// statically by scripts/build-control-plane node and packed into an image by scripts/node.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
