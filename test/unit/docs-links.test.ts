/**
 * Every relative link in README.md, plugins/README.md and docs/** resolves: the file or folder it
 * names exists, and a `#fragment` names a heading of the page it points to (GitHub's anchors).
 * Links to other sites are not followed.
 */
import { describe, expect, test } from "bun:test"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"

const root = resolve(import.meta.dir, "../..")

const markdownUnder = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return markdownUnder(path)
    return entry.name.endsWith(".md") ? [path] : []
  })

const pages = [join(root, "README.md"), join(root, "plugins/README.md"), ...markdownUnder(join(root, "docs"))]

/** The page's text without fenced code blocks and inline code, where brackets are not links. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, (code) => (code.includes("](") ? "" : code))

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export const anchorsOf = (text: string): Set<string> => {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  for (const match of text.replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = (match[1] ?? "").toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-")
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** Each link's target as written, from `[text](target)` and `[text](target "title")`. */
export const linksOf = (text: string): Array<string> =>
  [...prose(text).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] ?? "")

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target)

/** Why a link from `page` is broken, or undefined when it resolves. */
const brokenBecause = (page: string, target: string): string | undefined => {
  const [path = "", fragment] = target.split("#", 2)
  const file = path === "" ? page : resolve(dirname(page), decodeURIComponent(path))
  if (!existsSync(file)) return `${relative(root, file)} does not exist`
  if (fragment === undefined || fragment === "") return undefined
  if (statSync(file).isDirectory() || !file.endsWith(".md")) {
    return `#${fragment} points into ${relative(root, file)}, which has no headings`
  }
  return anchorsOf(readFileSync(file, "utf8")).has(fragment.toLowerCase())
    ? undefined
    : `${relative(root, file)} has no heading for #${fragment}`
}

describe("documentation links", () => {
  test("the pages to check exist", () => {
    expect(pages.map((p) => relative(root, p))).toContain("docs/operations.md")
  })

  test("anchors follow GitHub's rules", () => {
    expect([...anchorsOf("# Plugin runtime (`npm run bench:plugins`)\n## A\n## A\n```\n# not a heading\n```\n")]).toEqual([
      "plugin-runtime-npm-run-benchplugins",
      "a",
      "a-1"
    ])
    expect(linksOf("[x](a.md#b) `[y](c.md)` [z](https://e.org \"t\")\n```\n[w](d.md)\n```\n")).toEqual(["a.md#b", "https://e.org"])
  })

  for (const page of pages) {
    test(`every relative link in ${relative(root, page)} resolves`, () => {
      const broken = linksOf(readFileSync(page, "utf8"))
        .filter((target) => !isExternal(target))
        .flatMap((target) => {
          const why = brokenBecause(page, target)
          return why === undefined ? [] : [`${target}: ${why}`]
        })
      expect(broken).toEqual([])
    })
  }
})
