# Disk images: GPT + FAT32 ESP holding a signed UKI (docs/disk.md).
#
# The tests (builder/disk*_test.go, uki/) use Debian's systemd EFI stub
# from the pinned systemd-boot-efi .deb, check the image with sgdisk
# (gdisk), fsck.fat (dosfstools) and mtools, the signature with sbverify
# (sbsigntool) and osslsigncode, the section table with objdump (binutils),
# PCR 11 with systemd-measure (systemd), and boot the disk under Secure Boot
# with OVMF_CODE_4M.secboot.fd (ovmf) + swtpm.
DEBS += gdisk dosfstools mtools sbsigntool osslsigncode binutils systemd ovmf swtpm
RECIPE_DEBS += systemd-boot-efi=252.39-1~deb12u2

.PHONY: disk-test
# disk-test runs only the disk and UKI tests (about 3 minutes: two QEMU boots).
disk-test: deps debs
	MKCVM_REQUIRE_VM=1 MKCVM_DEBDIR=$(DEBDIR) $(GO) test -timeout 20m -run 'Disk|PE|GPT|VarStore|Enroll|PCR11|Assemble' ./uki ./builder ./measure
