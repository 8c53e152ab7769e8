/**
 * A release's `checksums.txt` as GoReleaser writes it: one `<sha256>  <file>`
 * line per asset (a `*` before the name marks binary mode, as sha256sum
 * writes it).
 */
import { Schema } from "effect"

const line = /^([0-9a-fA-F]{64}) [ *](.+)$/

export class MalformedChecksums extends Schema.TaggedError<MalformedChecksums>()("MalformedChecksums", {
  url: Schema.String,
  lineNumber: Schema.Number,
  line: Schema.String
}) {
  override get message() {
    return `${this.url} line ${this.lineNumber} is not "<sha256>  <file>": ${JSON.stringify(this.line.slice(0, 120))}; the release's checksums.txt is damaged, ask its publisher to fix it`
  }
}

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
