#!/usr/bin/env python3
# Produces measure/testdata/snp/kat.tsv by running sev-snp-measure v0.0.13
# (git 5b6a79e) as a CLI. Each line: expected stdout, TAB, the argument list
# (TAB-separated) with file names relative to the input directory.
import itertools, subprocess, sys
# usage: gen_kat.py SEV_SNP_MEASURE_CHECKOUT  (run inside the input directory)
REF = sys.argv[1] + "/sev-snp-measure.py"
K, I = "vmlinuz-6.1.0-50-amd64", "initrd.cpio.gz"
A = "console=ttyS0 root=/dev/vda1 ro mkcvm.kat=1"
rows = []
def run(*args):
    p = subprocess.run(["python3", REF, *args], capture_output=True, text=True)
    if p.returncode != 0:
        print("FAIL", args, p.stderr, file=sys.stderr); return
    rows.append(p.stdout.rstrip("\n") + "\t" + "\t".join(args))
models = ["EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa"]
vmms = ["QEMU", "ec2", "gce"]
gfs = ["0x1", "0x21"]
# SNP firmware-only on Debian bookworm OVMF.fd (no kernel-hashes section).
for v, m, vmm, gf in itertools.product(["1", "4", "96"], models, vmms, gfs):
    run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", v, "--vcpu-type", m, "--vmm-type", vmm, "--guest-features", gf)
# SNP with kernel hashes on the AmdSevX64 suffix.
for v, m, vmm, gf in itertools.product(["1", "2", "96"], models, vmms, gfs):
    run("--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--initrd", I, "--append", A,
        "--vcpus", v, "--vcpu-type", m, "--vmm-type", vmm, "--guest-features", gf)
for v, vmm in itertools.product(["1", "8"], vmms):
    amd = ["--ovmf", "ovmf_AmdSev_suffix.bin"]
    run("--mode", "snp", *amd, "--kernel", K, "--vcpus", v, "--vcpu-type", "EPYC-Milan", "--vmm-type", vmm)
    run("--mode", "snp", *amd, "--kernel", K, "--append", A, "--vcpus", v, "--vcpu-type", "EPYC-Genoa", "--vmm-type", vmm)
    run("--mode", "snp", *amd, "--kernel", K, "--initrd", I, "--vcpus", v, "--vcpu-type", "EPYC-Rome", "--vmm-type", vmm)
    run("--mode", "snp", *amd, "--vcpus", v, "--vcpu-type", "EPYC-Milan", "--vmm-type", vmm)
    run("--mode", "snp", "--ovmf", "ovmf_OvmfX64_suffix.bin", "--vcpus", v, "--vcpu-type", "EPYC-Milan", "--vmm-type", vmm)
# Signature flags and output options.
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "2", "--vcpu-sig", "0xa00f11")
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "2", "--vcpu-family", "25", "--vcpu-model", "17", "--vcpu-stepping", "1")
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "2", "--vcpu-type", "EPYC-Turin", "--output-format", "base64")
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "-v")
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "3", "--vmm-type", "ec2")
run("--mode", "snp", "--ovmf", "debian-OVMF.fd", "--vcpus", "3", "--vmm-type", "gce", "--guest-features", "0x21")
run("--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--initrd", I, "--append", A, "--vcpus", "4", "--vcpu-type", "EPYC-Milan", "-v", "--output-format", "base64")
# snp:ovmf-hash and its reuse.
for fw in ["debian-OVMF.fd", "ovmf_AmdSev_suffix.bin", "debian-OVMF_CODE.fd"]:
    run("--mode", "snp:ovmf-hash", "--ovmf", fw)
run("--mode", "snp", "--ovmf", "ovmf_AmdSev_suffix.bin", "--snp-ovmf-hash", "00" * 48, "--kernel", K, "--vcpus", "2", "--vcpu-type", "EPYC-Genoa")
# SEV-ES.
for v, m, vmm in itertools.product(["1", "4", "64"], ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"], vmms):
    run("--mode", "seves", "--ovmf", "debian-OVMF.fd", "--vcpus", v, "--vcpu-type", m, "--vmm-type", vmm)
for v, vmm in itertools.product(["1", "4"], vmms):
    run("--mode", "seves", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--initrd", I, "--append", A, "--vcpus", v, "--vcpu-type", "EPYC-Rome", "--vmm-type", vmm)
    run("--mode", "seves", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--vcpus", v, "--vcpu-type", "EPYC-Rome", "--vmm-type", vmm)
run("--mode", "seves", "--ovmf", "debian-OVMF.fd", "--vcpus", "2", "--vcpu-type", "EPYC", "-v")
run("--mode", "seves", "--ovmf", "ovmf_AmdSev_suffix.bin", "--vcpus", "4", "--vcpu-type", "EPYC-Rome", "--vmm-type", "QEMU")
# SNP with a Coconut SVSM (sev-snp-measure tests/fixtures, from a real launch).
for v, m in itertools.product(["1", "2", "4", "8"], ["EPYC-v4", "EPYC-Milan"]):
    run("--mode", "snp:svsm", "--ovmf", "svsm_ovmf.fd", "--svsm", "svsm.bin", "--vars-size", "540672", "--vcpus", v, "--vcpu-type", m)
run("--mode", "snp:svsm", "--ovmf", "svsm_ovmf.fd", "--svsm", "svsm.bin", "--vars-size", "540672", "--vcpus", "4", "--vcpu-type", "EPYC-v4", "--guest-features", "0x21", "-v")
# SEV.
run("--mode", "sev", "--ovmf", "debian-OVMF.fd")
run("--mode", "sev", "--ovmf", "debian-OVMF_CODE_4M.fd")
run("--mode", "sev", "--ovmf", "debian-OVMF.fd", "-v", "--output-format", "base64")
run("--mode", "sev", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--initrd", I, "--append", A)
run("--mode", "sev", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K)
run("--mode", "sev", "--ovmf", "ovmf_AmdSev_suffix.bin", "--kernel", K, "--append", A, "--vcpus", "4")
sys.stdout.write("# generated by measure/testdata/snp/gen_kat.py with sev-snp-measure 0.0.13 (virtee/sev-snp-measure git 5b6a79e); see testdata/provenance/snp.md\n")
for r in rows:
    sys.stdout.write(r + "\n")
