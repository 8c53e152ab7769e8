import { describe, expect, test } from "bun:test"
import { grantsAround } from "../../src/plugin-host/Landlock.ts"

/** A made-up tree: each folder with its entries. */
const tree: Record<string, ReadonlyArray<string>> = {
  "/": ["etc", "home", "tmp", "usr"],
  "/home": ["alice", "bob"],
  "/home/alice": [".kube", ".bashrc", "src"],
  "/home/alice/.kube": ["config", "cache"],
  "/tmp": ["kc-1", "hk-abc"],
  "/tmp/kc-1": ["kubeconfig"]
}
const list = (dir: string) => {
  const entries = tree[dir]
  if (entries === undefined) throw new Error(`ENOENT ${dir}`)
  return [...entries]
}

describe("Landlock grants around hidden files", () => {
  test("everything but the hidden paths is granted, folder by folder down from /", () => {
    expect(grantsAround(["/home/alice/.kube", "/tmp/kc-1/kubeconfig"], list).sort()).toEqual(
      ["/etc", "/home/alice/.bashrc", "/home/alice/src", "/home/bob", "/tmp/hk-abc", "/usr"].sort()
    )
  })

  test("a hidden file's siblings stay readable", () => {
    expect(grantsAround(["/home/alice/.kube/config"], list).sort()).toEqual(
      ["/etc", "/tmp", "/usr", "/home/bob", "/home/alice/.bashrc", "/home/alice/src", "/home/alice/.kube/cache"].sort()
    )
  })

  test("nothing hidden grants nothing (the helper is not used then)", () => {
    expect(grantsAround([], list)).toEqual([])
  })

  test("a folder on the way that cannot be listed is granted nothing", () => {
    const unlistable = (dir: string) => (dir === "/home/alice" ? list("/nowhere") : list(dir))
    expect(grantsAround(["/home/alice/.kube"], unlistable).sort()).toEqual(["/etc", "/home/bob", "/tmp", "/usr"])
  })
})
