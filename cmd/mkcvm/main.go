// Command mkcvm builds confidential-VM guest bundles and computes, signs,
// publishes and verifies their reference values.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mkcvm:", err)
		stop()
		os.Exit(exitCode(err))
	}
}
