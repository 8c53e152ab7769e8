/**
 * A release's `checksums.txt` as GoReleaser writes it: one `<sha256>  <file>`
 * line per asset (a `*` before the name marks binary mode, as sha256sum
 * writes it).
 */
import { MalformedChecksums } from "./Errors.ts"

const line = /^([0-9a-fA-F]{64}) [ *](.+)$/

/** File name to lower-case hex SHA-256. */
export type Checksums = ReadonlyMap<string, string>

export const parseChecksums = (url: string, text: string): Checksums | MalformedChecksums => {
  const sums = new Map<string, string>()
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    if (raw.trim() === "") continue
    const match = line.exec(raw.trimEnd())
    if (match === null) return new MalformedChecksums({ url, lineNumber: index + 1, line: raw })
    sums.set(match[2] ?? "", (match[1] ?? "").toLowerCase())
  }
  return sums
}
