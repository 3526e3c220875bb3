package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mkcvm/mkcvm/builder"
)

func init() {
	addCommand(func() *cobra.Command {
		cmd := &cobra.Command{Use: "disk", Short: "Unified kernel images and ESP disks (docs/disk.md)"}
		cmd.AddCommand(newDiskUKICmd())
		return cmd
	})
}

// ukiFlags are the inputs of `mkcvm disk uki`.
type ukiFlags struct {
	stub, kernel, initrd, cmdline, osrel, uname, key, cert, out string
}

func (f *ukiFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.stub, "stub", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd EFI stub (systemd-boot-efi)")
	fl.StringVar(&f.kernel, "kernel", "", "EFI-stub kernel image (required)")
	fl.StringVar(&f.initrd, "initrd", "", "initrd for .initrd")
	fl.StringVar(&f.cmdline, "cmdline", "", "kernel command line for .cmdline")
	fl.StringVar(&f.osrel, "os-release", "", "file for .osrel (default \"ID=mkcvm\")")
	fl.StringVar(&f.uname, "uname", "", "kernel release for .uname")
	fl.StringVar(&f.key, "key", "", "PEM RSA key to sign with (with --cert)")
	fl.StringVar(&f.cert, "cert", "", "certificate of --key")
	fl.StringVarP(&f.out, "out", "o", "uki.efi", "output file")
}

func newDiskUKICmd() *cobra.Command {
	f := &ukiFlags{}
	c := &cobra.Command{
		Use:   "uki",
		Short: "Assemble (and sign) a unified kernel image; prints its sha256",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			img, err := builder.MakeUKI(o)
			if err != nil {
				return err
			}
			tmp := filepath.Join(filepath.Dir(f.out), "."+filepath.Base(f.out)+".tmp")
			if err := os.WriteFile(tmp, img, 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, f.out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%x  %s\n", sha256.Sum256(img), f.out)
			return nil
		},
	}
	f.register(c)
	return c
}

func (f *ukiFlags) options() (builder.UKIOptions, error) {
	o := builder.UKIOptions{StubName: f.stub, Cmdline: f.cmdline, Uname: f.uname}
	read := func(path string, dst *[]byte) error {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		*dst = b
		return err
	}
	var osrel, key, cert []byte
	for _, r := range []struct {
		path string
		dst  *[]byte
	}{{f.stub, &o.Stub}, {f.kernel, &o.Kernel}, {f.initrd, &o.Initrd}, {f.osrel, &osrel}, {f.key, &key}, {f.cert, &cert}} {
		if err := read(r.path, r.dst); err != nil {
			return o, err
		}
	}
	if o.Kernel == nil {
		return o, fmt.Errorf("--kernel is required")
	}
	o.OSRelease = string(osrel)
	if (f.key == "") != (f.cert == "") {
		return o, fmt.Errorf("--key and --cert go together")
	}
	if f.key != "" {
		s, err := builder.ParseSBSigner(f.key, key, f.cert, cert)
		if err != nil {
			return o, err
		}
		o.Signer = s
	}
	return o, nil
}
