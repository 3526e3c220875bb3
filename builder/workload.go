package builder

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mkcvm/mkcvm/initrd"
	"github.com/mkcvm/mkcvm/initrd/runner/spec"
)

// workloadConfigPath is where the recipe's [initrd.workload] lands in the
// initrd: the runner's configuration file (spec.ConfigFile), as an
// initrd record path; workloadConfigMode is its permission.
var workloadConfigPath = strings.TrimPrefix(spec.ConfigFile, "/")

const workloadConfigMode = 0o644

func init() {
	initrdHooks = append(initrdHooks, workloadRecords)
	recipeChecks = append(recipeChecks, checkWorkload)
}

// WorkloadConfigFile returns the runner configuration file for w, written
// with the runner's own encoder (spec.Config.MarshalFile): mkcvm.image,
// mkcvm.config, then one mkcvm.arg and mkcvm.env line per entry, in order.
// Every other runner setting keeps its default unless the kernel command
// line sets it.
func WorkloadConfigFile(w *Workload) ([]byte, error) {
	c := spec.DefaultConfig()
	c.Image, c.ConfigDigest = w.Image, w.Config
	c.Args, c.Env = slices.Clone(w.Args), slices.Clone(w.Env)
	return c.MarshalFile()
}

// workloadRecords is Build's initrd hook: the runner configuration of the
// recipe's workload, if it has one.
func workloadRecords(r *Recipe, _ map[string][]byte) ([]initrd.Record, error) {
	w := r.Initrd.Workload
	if w == nil {
		return nil, nil
	}
	if i := handWrittenConfig(r.Initrd.Files); i >= 0 {
		return nil, workloadConflict(i, r.Initrd.Files[i].Path)
	}
	b, err := WorkloadConfigFile(w)
	if err != nil {
		return nil, fmt.Errorf("initrd.workload: %w", err)
	}
	return []initrd.Record{initrd.File(workloadConfigPath, workloadConfigMode, b)}, nil
}

// handWrittenConfig returns the index of the first recipe file that is
// the runner configuration or one of its parent directories, or -1.
func handWrittenConfig(files []InitrdFile) int {
	return slices.IndexFunc(files, func(f InitrdFile) bool {
		return f.Path == workloadConfigPath || strings.HasPrefix(workloadConfigPath, f.Path+"/")
	})
}

func workloadConflict(i int, p string) error {
	return &RecipeError{Where: fmt.Sprintf("initrd.file[%d]", i), Field: "path",
		Reason: fmt.Sprintf("%q conflicts with [initrd.workload], which writes %s: move the settings to [initrd.workload] or the kernel command line (mkcvm.<key>=<value>)", p, spec.ConfigFile)}
}

// checkWorkload is the recipe validator's hook for [initrd.workload]
// (checkInitrd already checks image and env syntax). It checks the config
// digest, that no recipe file takes the runner configuration's place, that
// every value survives the configuration file's encoding, and that the
// runner would accept the file together with the kernel command line and
// measure exactly the workload the predictor reads.
func checkWorkload(r *Recipe) []error {
	w := r.Initrd.Workload
	if w == nil {
		return nil
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &RecipeError{Where: "initrd.workload", Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if !layerRE.MatchString(w.Config) {
		bad("config", "must be the image config blob's digest, sha256:<64 lowercase hex>, got %q", w.Config)
	}
	if i := handWrittenConfig(r.Initrd.Files); i >= 0 {
		errs = append(errs, workloadConflict(i, r.Initrd.Files[i].Path))
	}
	for _, l := range []struct {
		key  string
		vals []string
	}{{"args", w.Args}, {"env", w.Env}} {
		for i, v := range l.vals {
			if err := spec.CheckFileValue(v); err != nil {
				bad(fmt.Sprintf("%s[%d]", l.key, i), "%v", err)
			}
		}
	}
	if len(errs) > 0 || !digestRefRE.MatchString(w.Image) {
		return errs // the image's own problem is reported by checkInitrd
	}
	if err := checkRunnerAccepts(w, r.Cmdline); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// checkRunnerAccepts parses the workload's configuration file and cmdline
// with the runner's parser, as the runner will at boot.
func checkRunnerAccepts(w *Workload, cmdline string) error {
	b, err := WorkloadConfigFile(w)
	if err != nil {
		return &RecipeError{Where: "initrd.workload", Reason: err.Error()}
	}
	c, err := spec.ParseConfig(string(b), cmdline)
	if err != nil {
		return &RecipeError{Where: "cmdline", Reason: fmt.Sprintf("with [initrd.workload] in %s the runner would refuse its configuration: %v", spec.ConfigFile, err)}
	}
	if c.Image != w.Image || c.ConfigDigest != w.Config || !slices.Equal(c.Args, w.Args) || !slices.Equal(c.Env, w.Env) {
		return &RecipeError{Where: "cmdline", Reason: "mkcvm.image, mkcvm.config, mkcvm.arg and mkcvm.env belong in [initrd.workload]: on the kernel command line they change the workload the runner measures away from the predicted one"}
	}
	return nil
}
