package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/initrd/runner"
	"github.com/mkcvm/mkcvm/initrd/runner/runnertest"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
)

// guestRegistry is where the guest reaches the test registry (guestfwd).
const guestRegistry = "10.0.2.100"

// guestKBS is where the guest reaches the test key broker (guestfwd; QEMU
// names guestfwd channels by guest port, so it needs its own port).
const guestKBS = "10.0.2.100:8080"

// helloNonce is the nonce the hello workload sends (runnertest/hello).
const helloNonce = "6d6b63766d2d6532652d6e6f6e6365"

// virtioModules are the Debian kernel's modules for virtio-net-pci, in
// dependency order (their modinfo "depends=" fields).
var virtioModules = []string{
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/net/core/failover.ko",
	"kernel/drivers/net/net_failover.ko",
	"kernel/drivers/net/virtio_net.ko",
}

func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// debMember returns the sha256 and size of a member of a .deb, read with
// dpkg-deb (independent of the builder's deb reader).
func debMember(t testing.TB, deb, member string) (string, int) {
	t.Helper()
	out, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO "./$2"`, "sh", deb, member).Output()
	if err != nil {
		t.Fatalf("reading %s from %s: %v", member, deb, err)
	}
	h := sha256.Sum256(out)
	return hex.EncodeToString(h[:]), len(out)
}

type recipeParams struct {
	kernelDeb, kver string
	image, config   string // workload image reference and config digest
	args, env       []string
}

// recipeText writes the e2e recipe: the default recipe's pinned kernel and
// OVMF, the virtio modules, the runner as init, its settings on the kernel
// command line, and the workload ([initrd.workload]), which the build writes
// into the runner's configuration file and the predictor reads.
func recipeText(t testing.TB, p recipeParams) string {
	var b strings.Builder
	fmt.Fprintf(&b, `name = "runner-e2e"
epoch = 1751414400
cmdline = %q
kernel = "kernel"

[firmware]
code = "ovmf-code"
vars = "ovmf-vars"

[inputs.ovmf-code]
deb = "ovmf_2022.11-6+deb12u2_all.deb"
path = "usr/share/OVMF/OVMF_CODE_4M.fd"
sha256 = "b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c"
size = 3653632

[inputs.ovmf-vars]
deb = "ovmf_2022.11-6+deb12u2_all.deb"
path = "usr/share/OVMF/OVMF_VARS_4M.fd"
sha256 = "5d2ac383371b408398accee7ec27c8c09ea5b74a0de0ceea6513388b15be5d1e"
size = 540672

[inputs.kernel]
deb = %q
path = "boot/vmlinuz-%s"
sha256 = "d8808aa4ca188560da1e6d749dcb930c87a5fd8b11ebff1f3fa6d728af35203d"
size = 8222656
`, runnerCmdline(), filepath.Base(p.kernelDeb), p.kver)
	for _, m := range virtioModules {
		sum, size := debMember(t, p.kernelDeb, "lib/modules/"+p.kver+"/"+m)
		fmt.Fprintf(&b, "\n[inputs.%s]\ndeb = %q\npath = %q\nsha256 = %q\nsize = %d\n",
			strings.TrimSuffix(filepath.Base(m), ".ko"), filepath.Base(p.kernelDeb), "lib/modules/"+p.kver+"/"+m, sum, size)
	}
	fmt.Fprintf(&b, `
[initrd]
compression = "gzip"
init = "github.com/mkcvm/mkcvm/cmd/mkcvm-runner"
`)
	for _, m := range virtioModules {
		n := filepath.Base(m)
		fmt.Fprintf(&b, "\n[[initrd.file]]\npath = \"lib/modules/%s\"\ninput = %q\nmode = \"0444\"\n", n, strings.TrimSuffix(n, ".ko"))
	}
	fmt.Fprintf(&b, "\n[initrd.workload]\nimage = %q\nconfig = %q\nargs = %s\nenv = %s\n", p.image, p.config, tomlList(p.args), tomlList(p.env))
	b.WriteString(`
[[shape]]
name = "tpm-q35"
platform = "tpm"
vmm = "qemu"
vmm_version = "7.2"
machine = "q35"
vcpus = 1
memory_mib = 1024
`)
	return b.String()
}

func tomlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// runnerCmdline is the kernel command line: the runner's settings other
// than the workload (which [initrd.workload] puts into
// /etc/mkcvm/runner.conf; a key may not be set in both places).
func runnerCmdline() string {
	var b strings.Builder
	fmt.Fprintf(&b, "console=ttyS0 panic=-1 mkcvm.net=dhcp mkcvm.kbs=http://%s mkcvm.kbs_required=true", guestKBS)
	b.WriteString(" mkcvm.insecure_registry=true mkcvm.tee=tpm mkcvm.on_exit=poweroff mkcvm.on_error=poweroff")
	for _, m := range virtioModules {
		fmt.Fprintf(&b, " mkcvm.module=/lib/modules/%s", filepath.Base(m))
	}
	return b.String()
}

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	vmtest.Require(t)
	kernelDeb := vmtest.DebianKernelDeb(t)
	kver := "6.1.0-50-amd64"
	if !strings.Contains(filepath.Base(kernelDeb), kver) {
		t.Skipf("kernel deb %s is not the pinned %s", kernelDeb, kver)
	}

	// The registry on 127.0.0.1, holding the hello workload by digest. With
	// tamper set it serves other bytes for the layer blob.
	var blobs atomic.Int32
	var tamper atomic.Bool
	img := runnertest.HelloImage(t)
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()
	evil := runnertest.Tamper(layerDigest.String(), []byte("not the layer the manifest names"))
	host := runnertest.Registry(t, func(h http.Handler) http.Handler {
		bad := evil(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
				blobs.Add(1)
			}
			if tamper.Load() {
				bad.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	_, portStr, _ := net.SplitHostPort(host)
	port, _ := strconv.Atoi(portStr)
	ref, configDigest := runnertest.Push(t, host, "test/hello", img)
	guestRef := guestRegistry + "/test/hello" + ref[strings.LastIndex(ref, "@"):]
	args := []string{"--from", "the recipe"}
	env := []string{"GREETING=hello-e2e"}

	r, out := buildBundle(t, recipeParams{kernelDeb: kernelDeb, kver: kver, image: guestRef, config: configDigest, args: args, env: env})
	initrdPath := filepath.Join(out, builder.InitrdName(r.Initrd.Compression))
	st, err := os.Stat(initrdPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd %s: %d bytes (%.2f MiB compressed)", filepath.Base(initrdPath), st.Size(), float64(st.Size())/(1<<20))

	// The predictor's value, from the recipe's workload reference alone.
	wl := r.Initrd.Workload
	_, predicted, err := measure.PredictWorkload(measure.WorkloadRef{Image: wl.Image, ConfigDigest: wl.Config, Args: wl.Args, Env: wl.Env})
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int32
	var received atomic.Pointer[runner.EvidenceResponse]
	kbsPort := keyBroker(t, predicted, &released, &received)
	opts := vmtest.Options{
		Code: filepath.Join(out, "OVMF_CODE.fd"), Vars: filepath.Join(out, "OVMF_VARS.fd"),
		Kernel: filepath.Join(out, builder.KernelFile), Initrd: initrdPath, Append: r.Cmdline,
		TPM: true, Net: []vmtest.Forward{{GuestAddr: guestRegistry + ":80", HostPort: port}, {GuestAddr: guestKBS, HostPort: kbsPort}},
		Timeout: 8 * time.Minute,
	}
	t.Run("workload", func(t *testing.T) {
		con := boot(t, opts)
		checkConsole(t, con, predicted)
		if blobs.Load() == 0 {
			t.Error("the guest fetched no blob from the registry")
		}
		if released.Load() != 1 {
			t.Errorf("the key broker released the secret %d times, want 1", released.Load())
		}
	})
	// The evidence the key broker accepted, checked by the library the
	// `mkcvm verify` command uses against the build's own manifest.json:
	// no second boot.
	t.Run("verify evidence", func(t *testing.T) {
		ev := received.Load()
		if ev == nil {
			t.Fatal("the key broker received no evidence")
		}
		verifyBrokerEvidence(t, filepath.Join(out, builder.ManifestFile), ev)
	})
	t.Run("wrong layer digest", func(t *testing.T) {
		tamper.Store(true)
		defer tamper.Store(false)
		// This boot also exercises static addressing (QEMU user network's
		// fixed plan) instead of DHCP, through a command-line override.
		o := opts
		o.Append = strings.Replace(o.Append, "mkcvm.net=dhcp", "mkcvm.net=static mkcvm.ip=10.0.2.15/24 mkcvm.gw=10.0.2.2", 1)
		con := boot(t, o)
		if !strings.Contains(con, "net     up (static)") {
			t.Errorf("console lacks the static network line")
		}
		if !strings.Contains(con, "outcome image-refused: layers: layer 0 ("+layerDigest.String()+"): digest mismatch") {
			t.Errorf("console lacks the refusal of the tampered layer:\n%s", con)
		}
		if strings.Contains(con, "workload: ") || strings.Contains(con, "run     starting") {
			t.Errorf("something of the workload ran:\n%s", con)
		}
	})
}

// boot runs the guest to power-off and returns its console (LF endings).
func boot(t *testing.T, o vmtest.Options) string {
	start := time.Now()
	o.NoDump = true // the runner prints no mkcvm-init records
	res, err := vmtest.Boot(t.Context(), t, o)
	if res == nil {
		t.Fatalf("boot: %v", err)
	}
	con := strings.ReplaceAll(res.Console, "\r\n", "\n")
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, con)
	}
	t.Logf("QEMU run (start to power-off, TCG): %s", time.Since(start).Round(time.Millisecond))
	return con
}

var stampRE = regexp.MustCompile(`mkcvm-runner: \[\s*(\d+)\.(\d+)\] run\s+starting`)

func checkConsole(t *testing.T, con string, predicted measure.WorkloadValues) {
	t.Helper()
	want := `workload: hello from the mkcvm workload: args=["--from" "the recipe"] greeting="hello-e2e" pid=1 uid=1000 host=mkcvm`
	if !strings.Contains(con, want) {
		t.Fatalf("console lacks the workload's line %q:\n%s", want, con)
	}
	if !strings.Contains(con, "workload: HELLO-SECRET "+kbsSecret+"\n") {
		t.Errorf("the workload did not read the key broker's secret")
	}
	if !strings.Contains(con, "outcome workload-exited code 3") {
		t.Errorf("console lacks the exit outcome")
	}
	if m := stampRE.FindStringSubmatch(con); m != nil {
		t.Logf("boot-to-workload (kernel start to workload start, CLOCK_BOOTTIME, QEMU TCG): %s.%ss", m[1], m[2])
	}
	ev := servedEvidence(t, con)
	events, err := measure.ParseWorkloadLog("served workload log", ev.WorkloadLog)
	if err != nil {
		t.Fatal(err)
	}
	replay := measure.ReplayWorkload(events)
	if replay.PCRSHA256 != predicted.PCRSHA256 {
		t.Errorf("replayed PCR %d %x != predicted %x", measure.WorkloadPCR, replay.PCRSHA256, predicted.PCRSHA256)
	}
	var tpmEv *runner.Evidence
	for _, e := range ev.Evidence {
		if e.Kind == "tpm" {
			tpmEv = e
		}
	}
	if tpmEv == nil {
		t.Fatal("no TPM evidence served")
	}
	nonce, _ := hex.DecodeString(helloNonce)
	b := measure.WorkloadBinding{Nonce: nonce, LogDigest: sha256.Sum256(ev.WorkloadLog), PublicKey: ev.PublicKey}
	pcr15, err := verifyQuote(tpmEv, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PCR %d: swtpm quote %x, replay %x, predicted %x", measure.WorkloadPCR, pcr15["sha256"], replay.PCRSHA256, predicted.PCRSHA256)
	if err := checkPCR15(pcr15, predicted); err != nil {
		t.Error(err)
	}
	if len(tpmEv.EventLog) == 0 {
		t.Error("no firmware event log served")
	}
}

// servedEvidence decodes the evidence the workload printed.
func servedEvidence(t *testing.T, con string) *runner.EvidenceResponse {
	t.Helper()
	const pfx = "workload: "
	i := strings.Index(con, pfx+"HELLO-EVIDENCE-BEGIN\n")
	j := strings.Index(con, pfx+"HELLO-EVIDENCE-END\n")
	if i < 0 || j < i {
		t.Fatalf("console lacks the workload's evidence dump:\n%s", con)
	}
	var enc strings.Builder
	for _, l := range strings.Split(con[i:j], "\n")[1:] {
		enc.WriteString(strings.TrimPrefix(l, pfx))
	}
	raw, err := base64.StdEncoding.DecodeString(enc.String())
	if err != nil {
		t.Fatalf("decoding the evidence dump: %v", err)
	}
	var ev runner.EvidenceResponse
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("decoding the evidence JSON: %v", err)
	}
	return &ev
}

// verifyQuote checks the TPM quote with go-tpm's decoders (independent of
// manifest/evidence): its signature with the served AK, its qualifying data
// against the binding, that it selects PCRs 0-23 of the sha256 and sha384
// banks, and its PCR digest against the served PCRs (in selection order);
// it returns PCR 15 of each bank.
func verifyQuote(ev *runner.Evidence, b measure.WorkloadBinding) (map[string][]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ev.AKPublic)
	if err != nil {
		return nil, err
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, err
	}
	ek, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("AK is %T, want ECDSA", key)
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](ev.Signature)
	if err != nil {
		return nil, err
	}
	es, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, err
	}
	qd := sha256.Sum256(ev.Quote)
	if !ecdsa.Verify(ek, qd[:], new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)) {
		return nil, fmt.Errorf("TPM quote signature does not verify with the served AK")
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](ev.Quote)
	if err != nil {
		return nil, err
	}
	n := b.TPMNonce()
	if !bytes.Equal(att.ExtraData.Buffer, n[:]) {
		return nil, fmt.Errorf("quote qualifying data %x does not bind nonce, log and key (%x)", att.ExtraData.Buffer, n)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return nil, err
	}
	banks := []string{"sha256", "sha384"}
	sels := info.PCRSelect.PCRSelections
	if len(sels) != 2 || sels[0].Hash != tpm2.TPMAlgSHA256 || sels[1].Hash != tpm2.TPMAlgSHA384 ||
		!bytes.Equal(sels[0].PCRSelect, []byte{0xff, 0xff, 0xff}) || !bytes.Equal(sels[1].PCRSelect, []byte{0xff, 0xff, 0xff}) {
		return nil, fmt.Errorf("quote selects %+v, want PCRs 0-23 of %v", sels, banks)
	}
	if len(ev.PCRs) != 48 {
		return nil, fmt.Errorf("%d PCR values served, want 48", len(ev.PCRs))
	}
	h := sha256.New()
	pcr15 := map[string][]byte{}
	for i, p := range ev.PCRs {
		if p.Bank != banks[i/24] || p.Index != i%24 {
			return nil, fmt.Errorf("served PCR value %d is %s PCR %d, want %s PCR %d", i, p.Bank, p.Index, banks[i/24], i%24)
		}
		h.Write(p.Value)
		if p.Index == measure.WorkloadPCR {
			pcr15[p.Bank] = p.Value
		}
	}
	if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
		return nil, fmt.Errorf("quoted PCR digest does not match the served PCR values")
	}
	return pcr15, nil
}

// checkPCR15 compares the quoted PCR 15 of both banks with the predictor.
func checkPCR15(pcr15 map[string][]byte, predicted measure.WorkloadValues) error {
	for bank, want := range map[string][]byte{"sha256": predicted.PCRSHA256[:], "sha384": predicted.PCRSHA384[:]} {
		if !bytes.Equal(pcr15[bank], want) {
			return fmt.Errorf("quoted PCR %d %s %x != predicted %x", measure.WorkloadPCR, bank, pcr15[bank], want)
		}
	}
	return nil
}

// kbsSecret is what the test key broker releases.
const kbsSecret = "released-only-to-the-measured-workload"

// kbsNonce is the key broker's challenge.
var kbsNonce = []byte("e2e-kbs-challenge-nonce")

// keyBroker is a key broker on 127.0.0.1: it releases kbsSecret, sealed to
// the runner's boot key, only for a TPM quote that verifies, binds its
// challenge, the served log and the key, and shows the predicted PCR 15 in
// both quoted banks. It keeps the first evidence it accepts in got.
func keyBroker(t *testing.T, want measure.WorkloadValues, served *atomic.Int32, got *atomic.Pointer[runner.EvidenceResponse]) int {
	nonce := kbsNonce
	mux := http.NewServeMux()
	mux.HandleFunc("GET /challenge", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]byte{"nonce": nonce})
	})
	mux.HandleFunc("POST /secret", func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			var ev runner.EvidenceResponse
			if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
				return err
			}
			if !bytes.Equal(ev.Nonce, nonce) {
				return fmt.Errorf("nonce %x is not the challenge", ev.Nonce)
			}
			b := measure.WorkloadBinding{Nonce: nonce, LogDigest: sha256.Sum256(ev.WorkloadLog), PublicKey: ev.PublicKey}
			for _, e := range ev.Evidence {
				if e.Kind != "tpm" {
					continue
				}
				pcr15, err := verifyQuote(e, b)
				if err != nil {
					return err
				}
				if err := checkPCR15(pcr15, want); err != nil {
					return err
				}
				got.CompareAndSwap(nil, &ev)
				s, err := runner.Seal(ev.PublicKey, []byte(kbsSecret), rand.Reader)
				if err != nil {
					return err
				}
				served.Add(1)
				return json.NewEncoder(w).Encode(s)
			}
			return fmt.Errorf("no TPM evidence")
		}()
		if err != nil {
			t.Errorf("key broker: %v", err)
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// BenchmarkInitrdSize builds the e2e recipe's initrd (runner as init, the
// virtio modules, gzip) and reports its compressed size; the target is under
// 8 MiB.
func BenchmarkInitrdSize(b *testing.B) {
	deb := os.Getenv("MKCVM_DEBDIR")
	debs, _ := filepath.Glob(filepath.Join(deb, "linux-image-6.1.0-50-amd64_*_amd64.deb"))
	if len(debs) == 0 {
		b.Skip("no linux-image .deb in MKCVM_DEBDIR")
	}
	ref := guestRegistry + "/test/hello@sha256:" + strings.Repeat("0", 64)
	cfg := "sha256:" + strings.Repeat("1", 64)
	var size int64
	for b.Loop() {
		r, out := buildBundle(b, recipeParams{kernelDeb: debs[0], kver: "6.1.0-50-amd64", image: ref, config: cfg})
		st, err := os.Stat(filepath.Join(out, builder.InitrdName(r.Initrd.Compression)))
		if err != nil {
			b.Fatal(err)
		}
		size = st.Size()
	}
	b.ReportMetric(float64(size), "initrd-gzip-bytes")
}

// buildBundle writes the e2e recipe and builds it with builder.Build into a
// temporary directory.
func buildBundle(t testing.TB, p recipeParams) (*builder.Recipe, string) {
	t.Helper()
	dir := t.TempDir()
	recipePath := filepath.Join(dir, "runner-e2e.toml")
	if err := os.WriteFile(recipePath, []byte(recipeText(t, p)), 0o644); err != nil {
		t.Fatal(err)
	}
	r, rtext, root, err := builder.LoadRecipe(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := filepath.Join(dir, "out")
	_, err = builder.Build(context.Background(), r, builder.BuildOptions{Out: out, RecipeText: rtext, ModuleDir: repoDir(),
		Cache:   &builder.Cache{Dir: filepath.Join(dir, "cache")},
		Fetcher: builder.NewSourceFetcher(r, root, filepath.SplitList(os.Getenv("MKCVM_DEBDIR")))})
	if err != nil {
		t.Fatalf("building the recipe: %v", err)
	}
	return r, out
}
