"""A reference model of the VMM side of the guest <-> VMM protocol (README.md), on the
Unicorn CPU emulator, to check the guests without a VMM.

It loads one guest ELF (PT_LOAD at p_paddr), starts N vCPUs as section 1 says, and
implements COM1 (lines to stdout), port 0xf4, port 0x3ff, the test device's ports and
MMIO page, IRQ_NOW / IRQ_ON_HLT / RECALL_IRQ by delivering the vector through the
guest's 64-bit IDT by hand, TSC_ADVANCE by emulating RDTSC/RDTSCP, and INVALID_STATE by
stopping. It is a model, not a VMM: no nested paging, no exits; Unicorn does not deliver
exceptions through the IDT (a guest exception stops the model).

Exit status: 0 PASS, 1 FAIL, 2 anything else (INVALID_STATE stop, error, step limit).

--mutate breaks one rule on purpose to show that a guest catches it:
  no-shadow  inject right after STI (ignores the STI shadow)
  ignore-if  inject while IF = 0
  no-tsc     ignore TSC_ADVANCE
"""
import argparse
import ctypes
import sys

from elftools.elf.elffile import ELFFile
from unicorn import Uc, UcError, UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, UC_HOOK_INSN, UC_HOOK_INTR
from unicorn.x86_const import (
    UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CS, UC_X86_REG_EAX, UC_X86_REG_ECX,
    UC_X86_REG_EDX, UC_X86_REG_EFLAGS, UC_X86_REG_EIP, UC_X86_REG_ESI, UC_X86_REG_ESP,
    UC_X86_REG_IDTR,
)

RAM_SIZE = 16 << 20
MMIO_BASE = 0xD000_0000
BOOT_MAGIC = 0x2BAD_B002
SECONDARY_MAGIC = 0x5643_5055
IF = 0x200
# The Unicorn instance is created in 32-bit mode (the guest's entry mode); it follows
# the guest into long mode, but only the 32-bit register names are readable then. All
# guest addresses are below 4 GiB, so that is enough.


class Vm:
    """State shared by all vCPUs: the devices."""

    def __init__(self):
        self.scratch_3ff = 0
        self.scratch = 0
        self.counter = 0
        self.sum = 0
        self.args = [0, 0]
        self.mm_scratch = bytearray(8)
        self.mm_writes = 0
        self.result = None
        self.line = ""
        self.step = 0
        self.last_write_step = -1


class Vcpu:
    def __init__(self, vm, ram, n, entry, mutate):
        self.vm, self.n, self.mutate = vm, n, mutate
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map_ptr(0, RAM_SIZE, UC_PROT_ALL, ctypes.addressof(ram))
        uc.mmio_map(MMIO_BASE, 0x1000, self.mmio_read, None, self.mmio_write, None)
        uc.hook_add(UC_HOOK_INSN, self.port_out, None, 1, 0, UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INSN, self.port_in, None, 1, 0, UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INTR, self.exception)
        if n == 0:
            uc.reg_write(UC_X86_REG_EAX, BOOT_MAGIC)
        else:
            uc.reg_write(UC_X86_REG_EAX, SECONDARY_MAGIC)
            uc.reg_write(UC_X86_REG_ESI, n)
        self.rip = entry
        self.steps = 0
        self.tsc_offset = 0
        self.pending = None  # (vector, when): when is "now", "hlt" or a step number
        self.shadow = False
        self.halted = False

    def stop(self, result):
        self.vm.result = result
        self.uc.emu_stop()

    # --- devices -------------------------------------------------------------------

    def mmio_read(self, uc, off, size, _):
        vm = self.vm
        if off == 0x000:
            return 0x4F49_4D4D
        if 0x008 <= off < 0x010:
            return int.from_bytes(vm.mm_scratch[off - 8:off - 8 + size], "little")
        if off == 0x010:
            return ~int.from_bytes(vm.mm_scratch[0:4], "little") & 0xFFFF_FFFF
        if off == 0x018:
            return vm.mm_writes
        return 0

    def mmio_write(self, uc, off, size, value, _):
        vm = self.vm
        if 0x008 <= off < 0x010:
            vm.mm_scratch[off - 8:off - 8 + size] = value.to_bytes(size, "little")
            # Unicorn splits a qword store in two: count stores per instruction.
            if vm.last_write_step != vm.step:
                vm.mm_writes += 1
                vm.last_write_step = vm.step

    def port_out(self, uc, port, size, value, _):
        vm = self.vm
        if port == 0x3F8:
            if value & 0xFF == 0x0A:
                print(vm.line, flush=True)
                vm.line = ""
            else:
                vm.line += chr(value & 0xFF)
        elif port == 0x3FF:
            vm.scratch_3ff = value & 0xFF
        elif port == 0xF4:
            self.stop(value)
        elif port == 0xE0C:
            vm.scratch = value
        elif port == 0xE14:
            vm.sum = (vm.sum + value) & 0xFFFF_FFFF
        elif port == 0xE18:
            pass
        elif port in (0xE20, 0xE24):
            vm.args[(port - 0xE20) // 4] = value
        elif port == 0xE1C:
            self.command(value)
        else:
            print(f"model: OUT to unknown port {port:#x}")

    def command(self, cmd):
        arg0, arg1 = self.vm.args
        if cmd == 1:
            self.pending = (arg0, "now")
        elif cmd == 2:
            self.pending = (arg0, "hlt")
        elif cmd == 3:
            self.pending = (arg0, self.steps + arg1 * 1000)  # 1 ms = 1000 instructions
        elif cmd == 4:
            if self.mutate != "no-tsc":
                self.tsc_offset += arg0 | (arg1 << 32)
        elif cmd == 5:
            print("model: INVALID_STATE: guest stopped")
            self.stop("invalid state")
        else:
            print(f"model: unknown command {cmd}")
            self.stop("protocol error")

    def port_in(self, uc, port, size, _):
        vm = self.vm
        mask = (1 << (8 * size)) - 1
        if port == 0x3FF:
            return vm.scratch_3ff
        if port == 0xE00:
            return 0x5645_4454
        if port == 0xE04:
            return self.n
        if port == 0xE08:
            return RAM_SIZE >> 20
        if port == 0xE0C:
            return vm.scratch & mask
        if port == 0xE10:
            vm.counter += 1
            return (vm.counter - 1) & mask
        if port == 0xE14:
            return vm.sum & mask
        print(f"model: IN from unknown port {port:#x}")
        return mask

    def exception(self, uc, vector, _):
        eip = uc.reg_read(UC_X86_REG_EIP)
        print(f"model: guest exception {vector} at {eip:#x} (the model cannot deliver it)")
        self.stop("exception")

    # --- execution -----------------------------------------------------------------

    def tsc(self):
        return self.steps * 4 + self.tsc_offset

    def inject(self, vector):
        """Delivers `vector` like a 64-bit interrupt gate (the guests run in long mode)."""
        uc = self.uc
        _, base, _, _ = uc.reg_read(UC_X86_REG_IDTR)
        gate = bytes(uc.mem_read(base + 16 * vector, 16))
        lo, hi = int.from_bytes(gate[:8], "little"), int.from_bytes(gate[8:], "little")
        target = (lo & 0xFFFF) | ((lo >> 48) << 16) | ((hi & 0xFFFF_FFFF) << 32)
        rsp, rflags = uc.reg_read(UC_X86_REG_ESP), uc.reg_read(UC_X86_REG_EFLAGS)
        frame = [self.rip, uc.reg_read(UC_X86_REG_CS), rflags, rsp, 0x10]  # RIP at the lowest address
        new_rsp = (rsp & ~0xF) - 8 * len(frame)
        for i, v in enumerate(frame):
            uc.mem_write(new_rsp + 8 * i, v.to_bytes(8, "little"))
        uc.reg_write(UC_X86_REG_ESP, new_rsp)
        uc.reg_write(UC_X86_REG_EFLAGS, rflags & ~IF)
        self.rip, self.pending, self.halted = target, None, False

    def set_tsc(self, with_aux):
        t = self.tsc()
        self.uc.reg_write(UC_X86_REG_EAX, t & 0xFFFF_FFFF)
        self.uc.reg_write(UC_X86_REG_EDX, t >> 32)
        if with_aux:
            self.uc.reg_write(UC_X86_REG_ECX, 0)

    def step(self, chunk):
        """Runs one instruction (or `chunk` with no RDTSC/HLT emulation when chunk > 1)."""
        uc = self.uc
        if_set = uc.reg_read(UC_X86_REG_EFLAGS) & IF or self.mutate == "ignore-if"
        if self.pending and if_set and not self.shadow:
            vector, when = self.pending
            if when == "now" or (isinstance(when, int) and self.steps >= when):
                self.inject(vector)
        self.steps += chunk
        if self.halted:
            return
        insn = bytes(uc.mem_read(self.rip, 3))
        self.shadow = insn[0] == 0xFB and self.mutate != "no-shadow"  # STI
        if chunk == 1 and insn[:2] == b"\x0f\x31":  # RDTSC
            self.set_tsc(False)
            self.rip += 2
        elif chunk == 1 and insn == b"\x0f\x01\xf9":  # RDTSCP
            self.set_tsc(True)
            self.rip += 3
        elif insn[0] == 0xF4:  # HLT: completes, ends the STI shadow
            self.rip += 1
            self.shadow = False
            if self.pending and self.pending[1] == "hlt":
                self.inject(self.pending[0])
            else:
                self.halted = True
        else:
            try:
                uc.emu_start(self.rip, 0xFFFF_FFFF_FFFF_FFFF, 0, chunk)
            except UcError as e:
                eip = uc.reg_read(UC_X86_REG_EIP)
                print(f"model: {e} at {eip:#x}")
                self.vm.result = "error"
            self.rip = uc.reg_read(UC_X86_REG_EIP)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("elf")
    p.add_argument("--vcpus", type=int, default=1)
    p.add_argument("--chunk", type=int, default=1,
                   help="instructions per turn; > 1 runs faster but without RDTSC/HLT emulation")
    p.add_argument("--max-steps", type=int, default=20_000_000)
    p.add_argument("--mutate", choices=["no-shadow", "ignore-if", "no-tsc"])
    a = p.parse_args()

    ram = ctypes.create_string_buffer(RAM_SIZE)
    with open(a.elf, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                data = seg.data()
                ctypes.memmove(ctypes.addressof(ram) + seg["p_paddr"], data, len(data))
        entry = elf["e_entry"]

    vm = Vm()
    vcpus = [Vcpu(vm, ram, n, entry, a.mutate) for n in range(a.vcpus)]
    steps = 0
    while vm.result is None and steps < a.max_steps:
        for v in vcpus:
            vm.step += 1
            v.step(a.chunk)
            steps += a.chunk
            if vm.result is not None:
                break
        if all(v.halted and not v.pending for v in vcpus):
            print("model: every vCPU halted with nothing pending")
            break
    if vm.line:
        print(vm.line)
    print(f"model: result {vm.result!r} after {steps} instructions")
    sys.exit(0 if vm.result == 0x10 else 1 if vm.result == 0x11 else 2)


if __name__ == "__main__":
    main()
