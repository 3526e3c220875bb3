// Command hello is the tiny static test workload of the runner's tests. It
// prints a greeting with its args, environment and identity, asks the
// runner's attestation endpoint for evidence (when the socket exists) and
// prints it base64-encoded between markers, prints the key-broker secret if
// one was delivered, and exits with the code named by HELLO_EXIT.
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
)

const (
	socket = "/run/mkcvm/attest.sock"
	secret = "/run/mkcvm/secret"
	nonce  = "6d6b63766d2d6532652d6e6f6e6365" // "mkcvm-e2e-nonce"
)

func main() {
	host, _ := os.Hostname()
	fmt.Printf("hello from the mkcvm workload: args=%q greeting=%q pid=%d uid=%d host=%s\n",
		os.Args[1:], os.Getenv("GREETING"), os.Getpid(), os.Getuid(), host)
	fmt.Fprintln(os.Stderr, "hello: a line on stderr")
	if b, err := os.ReadFile(secret); err == nil {
		fmt.Printf("HELLO-SECRET %s\n", b)
	}
	if _, err := os.Stat(socket); err == nil {
		if err := evidence(); err != nil {
			fmt.Printf("HELLO-EVIDENCE-ERROR %v\n", err)
		}
	}
	code, _ := strconv.Atoi(os.Getenv("HELLO_EXIT"))
	os.Exit(code)
}

func evidence() error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	resp, err := hc.Get("http://runner/evidence?nonce=" + nonce)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	enc := base64.StdEncoding.EncodeToString(b)
	fmt.Println("HELLO-EVIDENCE-BEGIN")
	for len(enc) > 0 {
		n := min(len(enc), 76)
		fmt.Println(enc[:n])
		enc = enc[n:]
	}
	fmt.Println("HELLO-EVIDENCE-END")
	return nil
}
