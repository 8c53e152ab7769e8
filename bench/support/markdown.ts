/**
 * A bench's tables as markdown, for `BENCH_MARKDOWN=file`: `npm run bench:all`
 * (scripts/bench-all.ts) places that file's text in docs/performance.md. The
 * console output stays the bench's own; this only writes the same figures.
 */
import { writeFileSync } from "node:fs"

/** A markdown table: a header row, its rule, the rows. */
export const markdownTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  [header, header.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n")

/** Writes the parts (each a line saying what follows, or a table), a blank line apart, to BENCH_MARKDOWN if it is set. */
export const writeMarkdown = (parts: ReadonlyArray<string>) => {
  const file = process.env.BENCH_MARKDOWN
  if (file !== undefined) writeFileSync(file, `${parts.join("\n\n")}\n`)
}
