/** What an executable's header says it is: format and CPU, read from the bytes as loaders read them. */
import { openSync, readSync, closeSync } from "node:fs"

export interface ExecutableKind {
  readonly format: "ELF" | "Mach-O" | "PE" | "unknown"
  /** Go's arch name, or the raw machine number when unknown. */
  readonly arch: string
}

const head = (file: string, bytes = 4096) => {
  const fd = openSync(file, "r")
  try {
    const buffer = Buffer.alloc(bytes)
    const read = readSync(fd, buffer, 0, bytes, 0)
    return buffer.subarray(0, read)
  } finally {
    closeSync(fd)
  }
}

export const executableKind = (file: string): ExecutableKind => {
  const b = head(file)
  // ELF: 0x7f "ELF", 64-bit class, little-endian; e_machine at 18 (62 = x86-64, 183 = AArch64).
  if (b.readUInt32BE(0) === 0x7f454c46 && b[4] === 2 && b[5] === 1) {
    const machine = b.readUInt16LE(18)
    return { format: "ELF", arch: machine === 62 ? "amd64" : machine === 183 ? "arm64" : `machine ${machine}` }
  }
  // Mach-O 64-bit, little-endian: magic 0xfeedfacf; cputype at 4 (CPU_ARCH_ABI64 | 7 = x86_64, | 12 = arm64).
  if (b.readUInt32LE(0) === 0xfeedfacf) {
    const cpu = b.readUInt32LE(4)
    return { format: "Mach-O", arch: cpu === 0x01000007 ? "amd64" : cpu === 0x0100000c ? "arm64" : `cputype ${cpu}` }
  }
  // PE: "MZ", the PE header's offset at 0x3c, "PE\0\0" there, then the COFF Machine (0x8664 = x86-64, 0xaa64 = ARM64).
  if (b.toString("latin1", 0, 2) === "MZ") {
    const pe = b.readUInt32LE(0x3c)
    if (b.toString("latin1", pe, pe + 4) === "PE\0\0") {
      const machine = b.readUInt16LE(pe + 4)
      return { format: "PE", arch: machine === 0x8664 ? "amd64" : machine === 0xaa64 ? "arm64" : `machine ${machine}` }
    }
  }
  return { format: "unknown", arch: "unknown" }
}

/** The format each OS's loader expects. */
export const formatOf = (os: string) => (os === "linux" ? "ELF" : os === "darwin" ? "Mach-O" : "PE")
