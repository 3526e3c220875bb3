package main

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/initrd"
	"github.com/spf13/cobra"
)

func init() {
	addCommand(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "initrd",
			Short: "Inspect initramfs images",
		}
		cmd.AddCommand(&cobra.Command{
			Use:   "ls FILE",
			Short: "List an initrd (newc cpio; none, gzip or zstd): mode uid gid size sha256 path",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				es, _, err := initrd.Read(args[0], b)
				if err != nil {
					return fmt.Errorf("reading initrd: %w", err)
				}
				return initrd.List(cmd.OutOrStdout(), es)
			},
		})
		return cmd
	})
}
