// Package boottest proves mkcvm's vTPM predictions against real measured
// boots: QEMU 7.2 + Debian OVMF + swtpm direct-boot the Debian 6.1 kernel
// with an initrd whose /init (cmd/mkcvm-init) dumps the firmware event log
// and the PCRs, and the tests compare them with the prediction event by
// event and PCR by PCR. It holds only tests.
package boottest
