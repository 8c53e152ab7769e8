/**
 * The pieces `npm run image` assembles the image from, without running it:
 * the Dockerfile read as the recipe, the layer's tar (read back with another
 * tar implementation), Debian's version order and the .deb's ar container.
 */
import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Parser } from "tar"
import { dockerfile, runtimeConfig } from "../../scripts/image.ts"
import { arMembers, compareDebianVersions } from "../../scripts/release/debian.ts"
import { readDockerfile } from "../../scripts/release/dockerfile.ts"
import { type TarEntry, tarOf } from "../../scripts/release/oci.ts"

describe("the Dockerfile, read as the image's recipe", () => {
  test("copies the staged root filesystem as root and the writable folders as 65532, and declares the runtime config", () => {
    const recipe = readDockerfile(dockerfile, { TARGETARCH: "arm64" })
    expect(recipe.copies).toEqual([
      { from: "dist/image/rootfs-arm64/", to: "/", uid: 0, gid: 0 },
      { from: "dist/image/writable/", to: "/", uid: 65532, gid: 65532 }
    ])
    expect(runtimeConfig(recipe)).toEqual({
      User: "65532:65532",
      Env: ["HOME=/tmp", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
      Entrypoint: ["/usr/bin/tini", "--", "/usr/local/bin/halkyon"],
      Cmd: ["run", "--plugins-dir", "/plugins"],
      WorkingDir: "/tmp",
      ExposedPorts: { "8080/tcp": {}, "8081/tcp": {} }
    })
  })

  const readText = (text: string) => {
    const dir = mkdtempSync(join(tmpdir(), "halkyon-dockerfile-"))
    try {
      writeFileSync(join(dir, "Dockerfile"), text)
      return readDockerfile(join(dir, "Dockerfile"), { TARGETARCH: "amd64" })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }

  test("stops at what it cannot assemble, naming it", () => {
    expect(() => readText("FROM scratch\nRUN echo hi\n")).toThrow("does not assemble RUN")
    expect(() => readText("FROM debian:12\n")).toThrow("FROM scratch only")
    expect(() => readText("FROM scratch\nENTRYPOINT /usr/bin/tini\n")).toThrow("exec form")
    expect(() => readText("FROM scratch\nCOPY dist/${TARGETARCH}/ /\n")).toThrow("not a declared ARG")
    expect(() => readText("FROM scratch\nCOPY --chown=halkyon dist/ /\n")).toThrow("numeric uid:gid")
    expect(readText("FROM scratch\nARG TARGETARCH\nCOPY dist/${TARGETARCH}/ /\n").copies).toEqual([
      { from: "dist/amd64/", to: "/", uid: 0, gid: 0 }
    ])
  })
})

/** The entries of a tar as node-tar reads them. */
const readTar = async (tar: Uint8Array) => {
  const seen: Array<{ path: string; type: string; mode: number; uid: number; gid: number; mtime: number; body: string }> = []
  const parser = new Parser({
    onReadEntry: (entry) => {
      const chunks: Array<Buffer> = []
      entry.on("data", (c: Buffer) => chunks.push(c))
      entry.on("end", () =>
        seen.push({
          path: entry.path,
          type: entry.type,
          mode: entry.mode ?? -1,
          uid: entry.uid ?? -1,
          gid: entry.gid ?? -1,
          mtime: entry.mtime?.getTime() ?? -1,
          body: Buffer.concat(chunks).toString()
        }))
    }
  })
  await new Promise<void>((resolve, reject) => {
    parser.on("end", () => resolve())
    parser.on("error", reject)
    parser.end(Buffer.from(tar))
  })
  return seen
}

describe("the layer's tar", () => {
  const entries: ReadonlyArray<TarEntry> = [
    { path: "usr/bin/tini", kind: "file", mode: 0o755, uid: 0, gid: 0, data: new TextEncoder().encode("x".repeat(700)) },
    { path: "tmp", kind: "dir", mode: 0o1777, uid: 0, gid: 0 },
    { path: "plugins", kind: "dir", mode: 0o755, uid: 65532, gid: 65532 },
    { path: "usr", kind: "dir", mode: 0o755, uid: 0, gid: 0 },
    { path: "usr/bin", kind: "dir", mode: 0o755, uid: 0, gid: 0 },
    { path: `${"d".repeat(120)}/file`, kind: "file", mode: 0o644, uid: 0, gid: 0, data: new TextEncoder().encode("long") }
  ]

  test("holds every entry in path order, owners and modes as given, every mtime 0, contents intact", async () => {
    const read = await readTar(tarOf(entries))
    expect(read.map((e) => `${e.type} ${e.mode.toString(8)} ${e.uid}:${e.gid} ${e.mtime} ${e.path} ${e.body.length}`)).toEqual([
      `File 644 0:0 0 ${"d".repeat(120)}/file 4`,
      "Directory 755 65532:65532 0 plugins/ 0",
      "Directory 1777 0:0 0 tmp/ 0",
      "Directory 755 0:0 0 usr/ 0",
      "Directory 755 0:0 0 usr/bin/ 0",
      "File 755 0:0 0 usr/bin/tini 700"
    ])
  })

  test("is the same bytes for the same entries in any order", () => {
    expect(Buffer.from(tarOf(entries)).equals(Buffer.from(tarOf([...entries].reverse())))).toBe(true)
  })
})

describe("Debian versions, in dpkg's order", () => {
  const ascending = ["1.0~rc1", "1.0", "1.0-1", "1.0-1+deb12u1", "1.0-1+deb12u9", "1.0-1+deb12u10", "1.0a", "1.1", "1:0.1"]
  test(ascending.join(" < "), () => {
    for (const [i, a] of ascending.entries()) {
      for (const [j, b] of ascending.entries()) {
        expect({ a, b, order: Math.sign(compareDebianVersions(a, b)) }).toEqual({ a, b, order: Math.sign(i - j) })
      }
    }
  })
})

describe("a .deb's ar container", () => {
  const member = (name: string, body: string) => {
    const header = `${name.padEnd(16)}${"0".padEnd(12)}${"0".padEnd(6)}${"0".padEnd(6)}${"100644".padEnd(8)}${
      String(body.length).padEnd(10)
    }\`\n`
    return `${header}${body}${body.length % 2 === 1 ? "\n" : ""}`
  }

  test("yields each member's bytes, odd sizes padded", () => {
    const members = [member("debian-binary", "2.0\n"), member("control.tar.xz/", "abc"), member("data.tar.xz", "payload")]
    const archive = new TextEncoder().encode(`!<arch>\n${members.join("")}`)
    const read = arMembers(archive)
    expect([...read.keys()]).toEqual(["debian-binary", "control.tar.xz", "data.tar.xz"])
    expect(new TextDecoder().decode(read.get("data.tar.xz"))).toBe("payload")
    expect(new TextDecoder().decode(read.get("control.tar.xz"))).toBe("abc")
  })

  test("refuses what is not one", () => {
    expect(() => arMembers(new TextEncoder().encode("PK\u0003\u0004"))).toThrow("not an ar archive")
  })
})
