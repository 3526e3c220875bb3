package runner

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mkcvm/mkcvm/initrd/runner/runnertest"
	"github.com/mkcvm/mkcvm/measure"
)

func TestMain(m *testing.M) {
	if IsChild() {
		ReportChildError(ChildMain())
		os.Exit(127)
	}
	os.Exit(m.Run())
}

// fakeExec records the spec and, while "running", asks the attestation
// endpoint for evidence the way a workload would.
type fakeExec struct {
	spec     *Spec
	evidence *EvidenceResponse
	secret   []byte
}

func (f *fakeExec) Run(ctx context.Context, s *Spec) (int, error) {
	f.spec = s
	f.secret, _ = os.ReadFile(filepath.Join(s.Share, SecretName))
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(s.Share, SocketName))
	}}}
	resp, err := hc.Get("http://runner/evidence?nonce=00112233445566778899")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	f.evidence = &EvidenceResponse{}
	return 7, json.NewDecoder(resp.Body).Decode(f.evidence)
}

// kbsServer is a key broker that checks the binding of the software evidence
// and seals a secret to the boot key.
func kbsServer(t *testing.T, fail bool) string {
	nonce := []byte("kbs-challenge-nonce")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /challenge", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]byte{"nonce": nonce})
	})
	mux.HandleFunc("POST /secret", func(w http.ResponseWriter, r *http.Request) {
		var ev EvidenceResponse
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || fail {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b := measure.WorkloadBinding{Nonce: ev.Nonce, LogDigest: sha256.Sum256(ev.WorkloadLog), PublicKey: ev.PublicKey}
		rd := b.ReportData()
		if !bytes.Equal(ev.Nonce, nonce) || !bytes.Equal(ev.Evidence[0].ReportData, rd[:]) {
			http.Error(w, "binding", http.StatusForbidden)
			return
		}
		s, err := Seal(ev.PublicKey, []byte("the-secret"), rand.Reader)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		json.NewEncoder(w).Encode(s)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL
}

func newTestRunner(t *testing.T, c *Config) (*Runner, *SoftwareBank, *fakeExec) {
	bank := &SoftwareBank{}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	att, err := NewAttester([]TEE{bank}, key)
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeExec{}
	// Unix socket paths are limited to 108 bytes: keep the work dir short.
	wd, err := os.MkdirTemp("", "rn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(wd) })
	return &Runner{Config: c, Attester: att, WorkDir: wd, Exec: fe, Logf: func(st, f string, a ...any) { t.Logf(st+": "+f, a...) }}, bank, fe
}

func TestRunnerHappyPath(t *testing.T) {
	img := runnertest.HelloImage(t)
	host := runnertest.Registry(t, nil)
	ref, cd := runnertest.Push(t, host, "test/hello", img)
	c, err := ParseConfig("mkcvm.image="+ref+"\nmkcvm.insecure_registry=1\nmkcvm.env=GREETING=from-config\nmkcvm.kbs="+kbsServer(t, false)+"\nmkcvm.kbs_required=1\n", "quiet mkcvm.arg=one mkcvm.arg=\"two words\"")
	if err != nil {
		t.Fatal(err)
	}
	r, bank, fe := newTestRunner(t, c)
	code, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	wantSpec := &Spec{Root: filepath.Join(r.WorkDir, "root"), Share: filepath.Join(r.WorkDir, "share"),
		Argv: []string{"hello", "one", "two words"}, Env: []string{"PATH=/bin", "GREETING=from-config", "HELLO_EXIT=3"},
		UID: 1000, GID: 1000, Cwd: "/", Hostname: "mkcvm"}
	if d := cmp.Diff(wantSpec, fe.spec); d != "" {
		t.Errorf("spec (-want +got):\n%s", d)
	}
	if string(fe.secret) != "the-secret" {
		t.Errorf("secret = %q", fe.secret)
	}
	_, want, err := measure.PredictWorkload(measure.WorkloadRef{Image: ref, ConfigDigest: cd, Args: c.Args, Env: c.Env})
	if err != nil {
		t.Fatal(err)
	}
	if bank.PCR256 != want.PCRSHA256 || bank.RTMR != want.RTMR {
		t.Errorf("bank = %x / %x, predicted %x / %x", bank.PCR256, bank.RTMR, want.PCRSHA256, want.RTMR)
	}
	ev := fe.evidence
	events, err := measure.ParseWorkloadLog("served log", ev.WorkloadLog)
	if err != nil {
		t.Fatal(err)
	}
	if got := measure.ReplayWorkload(events); got != want {
		t.Errorf("replay of the served log differs from the prediction")
	}
	b := measure.WorkloadBinding{Nonce: ev.Nonce, LogDigest: sha256.Sum256(ev.WorkloadLog), PublicKey: ev.PublicKey}
	rd := b.ReportData()
	if !bytes.Equal(ev.Evidence[0].ReportData, rd[:]) || !bytes.Equal(ev.Evidence[0].Registers[0].Value, want.PCRSHA256[:]) {
		t.Error("served evidence does not bind the nonce, log and key, or does not carry the registers")
	}
	if b, err := os.ReadFile(filepath.Join(wantSpec.Root, "bin/hello")); err != nil || !bytes.Equal(b, runnertest.Hello(t)) {
		t.Errorf("extracted bin/hello differs: %v", err)
	}
}

// TestRunnerRefuses: each failure stops the runner before the workload runs.
func TestRunnerRefuses(t *testing.T) {
	img := runnertest.HelloImage(t)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	evil := runnertest.Image(t, runnertest.HelloImageConfig(), runnertest.Layer(t, []runnertest.File{{Name: "../../etc/evil", Body: []byte("x")}}))
	for _, tc := range []struct {
		name  string
		img   interface{}
		wrap  func(http.Handler) http.Handler
		extra string
		stage string
		pcrs  bool // events were recorded before the failure
	}{
		{name: "layer bytes differ", wrap: runnertest.Tamper(ld.String(), []byte("not the layer")), stage: StageLayers, pcrs: true},
		{name: "hostile layer", img: evil, stage: StageExtract, pcrs: true},
		{name: "pinned config differs", extra: "mkcvm.config=sha256:" + strings.Repeat("0", 64) + "\n", stage: StageFetch},
		{name: "key broker refuses", extra: "mkcvm.kbs=" + kbsServer(t, true) + "\nmkcvm.kbs_required=1\n", stage: StageKBS, pcrs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := runnertest.Registry(t, tc.wrap)
			im := img
			if tc.img != nil {
				im = evil
			}
			ref, _ := runnertest.Push(t, host, "test/hello", im)
			c, err := ParseConfig("mkcvm.image="+ref+"\nmkcvm.insecure_registry=1\n"+tc.extra, "")
			if err != nil {
				t.Fatal(err)
			}
			r, bank, fe := newTestRunner(t, c)
			_, err = r.Run(t.Context())
			se, ok := errors.AsType[*StageError](err)
			if !ok || se.Stage != tc.stage {
				t.Fatalf("err = %v, want a %s StageError", err, tc.stage)
			}
			t.Logf("refused: %v", err)
			if fe.spec != nil {
				t.Error("the workload was started")
			}
			if (bank.PCR256 != [32]byte{}) != tc.pcrs {
				t.Errorf("PCR extended = %v, want %v", bank.PCR256 != [32]byte{}, tc.pcrs)
			}
		})
	}
}
