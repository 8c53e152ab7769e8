/**
 * The SDK's HPACK (src/sdk/wire/Hpack.ts) against RFC 7541's own examples
 * (Appendix C: requests with and without Huffman, responses that evict
 * from a 256-octet table), round trips through our encoder, and the
 * malformed blocks a peer could send.
 */
import { describe, expect, test } from "bun:test"
import { encodeHeaders, type HeaderField, HeaderListTooLarge, HpackDecoder, HpackError, huffmanDecode } from "../../src/sdk/wire/Hpack.ts"
import { HuffmanCodeLengths } from "../../src/sdk/wire/HuffmanCode.ts"

/** Huffman-codes bytes with the canonical code of RFC 7541's lengths, padded with ones: an encoder to check the decoder's tree with. */
const huffmanEncode = (bytes: ReadonlyArray<number>) => {
  const codes: Array<bigint> = []
  let code = 0n
  let previous = 0
  for (
    const { symbol, length } of HuffmanCodeLengths.map((length, symbol) => ({ symbol, length })).sort((a, b) =>
      a.length - b.length || a.symbol - b.symbol
    )
  ) {
    code <<= BigInt(length - previous)
    previous = length
    codes[symbol] = code++
  }
  let bits = 0n
  let count = 0
  for (const byte of bytes) {
    bits = (bits << BigInt(HuffmanCodeLengths[byte] ?? 0)) | (codes[byte] ?? 0n)
    count += HuffmanCodeLengths[byte] ?? 0
  }
  const padding = (8 - (count % 8)) % 8
  bits = (bits << BigInt(padding)) | ((1n << BigInt(padding)) - 1n)
  return Uint8Array.from(Buffer.from(bits.toString(16).padStart((count + padding) / 4, "0"), "hex"))
}

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"))

interface Step {
  readonly block: string
  readonly fields: ReadonlyArray<HeaderField>
  readonly table: ReadonlyArray<HeaderField>
  readonly size: number
}

/** Decodes the steps in order on one decoder: each step's fields, and the dynamic table after it. */
const series = (tableSize: number, steps: ReadonlyArray<Step>) => {
  const decoder = new HpackDecoder(tableSize)
  for (const step of steps) {
    expect(decoder.decode(hex(step.block))).toEqual(step.fields.map(([n, v]) => [n, v]))
    expect(decoder.table).toEqual(step.table.map(([n, v]) => [n, v]))
    expect(decoder.tableSize).toBe(step.size)
  }
}

const request1: ReadonlyArray<HeaderField> = [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]]
const request2: ReadonlyArray<HeaderField> = [...request1, ["cache-control", "no-cache"]]
const request3: ReadonlyArray<HeaderField> = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"]
]
const requestTables: ReadonlyArray<ReadonlyArray<HeaderField>> = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [["custom-key", "custom-value"], ["cache-control", "no-cache"], [":authority", "www.example.com"]]
]

const date1 = "Mon, 21 Oct 2013 20:13:21 GMT"
const date2 = "Mon, 21 Oct 2013 20:13:22 GMT"
const location = "https://www.example.com"
const cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
const response1: ReadonlyArray<HeaderField> = [[":status", "302"], ["cache-control", "private"], ["date", date1], ["location", location]]
const response2: ReadonlyArray<HeaderField> = [[":status", "307"], ["cache-control", "private"], ["date", date1], ["location", location]]
const response3: ReadonlyArray<HeaderField> = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", date2],
  ["location", location],
  ["content-encoding", "gzip"],
  ["set-cookie", cookie]
]
const responseTables: ReadonlyArray<ReadonlyArray<HeaderField>> = [
  [["location", location], ["date", date1], ["cache-control", "private"], [":status", "302"]],
  // ":status: 307" goes in; the oldest entry (":status: 302") is evicted for room.
  [[":status", "307"], ["location", location], ["date", date1], ["cache-control", "private"]],
  [["set-cookie", cookie], ["content-encoding", "gzip"], ["date", date2]]
]

describe("HPACK decoding: RFC 7541 Appendix C", () => {
  test("C.3: requests without Huffman coding", () =>
    series(4096, [
      { block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", fields: request1, table: requestTables[0] ?? [], size: 57 },
      { block: "8286 84be 5808 6e6f 2d63 6163 6865", fields: request2, table: requestTables[1] ?? [], size: 110 },
      {
        block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        fields: request3,
        table: requestTables[2] ?? [],
        size: 164
      }
    ]))

  test("C.4: requests with Huffman coding", () =>
    series(4096, [
      { block: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", fields: request1, table: requestTables[0] ?? [], size: 57 },
      { block: "8286 84be 5886 a8eb 1064 9cbf", fields: request2, table: requestTables[1] ?? [], size: 110 },
      {
        block: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        fields: request3,
        table: requestTables[2] ?? [],
        size: 164
      }
    ]))

  test("C.5: responses without Huffman coding, evicting from a 256-octet table", () =>
    series(256, [
      {
        block: `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
          2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
        fields: response1,
        table: responseTables[0] ?? [],
        size: 222
      },
      { block: "4803 3330 37c1 c0bf", fields: response2, table: responseTables[1] ?? [], size: 222 },
      {
        block: `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
          54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
          5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
        fields: response3,
        table: responseTables[2] ?? [],
        size: 215
      }
    ]))

  test("C.6: responses with Huffman coding, evicting from a 256-octet table", () =>
    series(256, [
      {
        block: `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
          2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
        fields: response1,
        table: responseTables[0] ?? [],
        size: 222
      },
      { block: "4883 640e ffc1 c0bf", fields: response2, table: responseTables[1] ?? [], size: 222 },
      {
        block: `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
          77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
          9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
        fields: response3,
        table: responseTables[2] ?? [],
        size: 215
      }
    ]))
})

describe("HPACK: Huffman strings", () => {
  test("RFC 7541's Huffman-coded strings decode", () => {
    expect(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))).toBe("www.example.com")
    expect(huffmanDecode(hex("a8eb 1064 9cbf"))).toBe("no-cache")
    expect(huffmanDecode(hex("25a8 49e9 5ba9 7d7f"))).toBe("custom-key")
    expect(huffmanDecode(hex("6402"))).toBe("302")
    expect(huffmanDecode(new Uint8Array(0))).toBe("")
  })

  test("every byte value decodes, alone and all 256 in a row", () => {
    for (let byte = 0; byte < 256; byte++) expect(huffmanDecode(huffmanEncode([byte]))).toBe(String.fromCharCode(byte))
    const all = Array.from({ length: 256 }, (_, i) => 255 - i)
    expect(huffmanDecode(huffmanEncode(all))).toBe(String.fromCharCode(...all))
  })

  test("padding longer than 7 bits, padding not all ones, and EOS are refused", () => {
    // "302" is 0x6402: 0110 0100 0000 0010 — then a whole byte of ones is 8 bits of padding.
    expect(() => huffmanDecode(hex("6402 ff"))).toThrow(HpackError)
    // 'a' is 00011 (5 bits): padded with 000 instead of 111.
    expect(() => huffmanDecode(hex("18"))).toThrow(HpackError)
    expect(huffmanDecode(hex("1f"))).toBe("a")
    // EOS is 30 ones: four bytes of ones hold it.
    expect(() => huffmanDecode(hex("ffff ffff"))).toThrow(HpackError)
  })
})

describe("HPACK: dynamic table", () => {
  test("a size update evicts what no longer fits, and a larger one than our limit is refused", () => {
    const decoder = new HpackDecoder(256)
    decoder.decode(hex("4803 3330 3258 0770 7269 7661 7465"))
    expect(decoder.table).toEqual([["cache-control", "private"], [":status", "302"]])
    expect(decoder.tableSize).toBe(52 + 42)
    // 0x3f 0x15: size update to 31 + 21 = 52 octets — only the newest entry stays.
    decoder.decode(hex("3f15"))
    expect(decoder.table).toEqual([["cache-control", "private"]])
    // Index 62 is the newest dynamic entry.
    expect(decoder.decode(hex("be"))).toEqual([["cache-control", "private"]])
    // 0 empties it.
    decoder.decode(hex("20"))
    expect(decoder.tableSize).toBe(0)
    expect(() => decoder.decode(hex("be"))).toThrow(HpackError)
    // 0x3f 0xe2 0x01: 31 + 226 = 257, over the 256 we allowed.
    expect(() => decoder.decode(hex("3fe201"))).toThrow(HpackError)
  })

  test("a size update after a header field is refused", () => {
    expect(() => new HpackDecoder().decode(hex("82 20"))).toThrow(HpackError)
  })

  test("an entry larger than the whole table empties it and is not added", () => {
    const decoder = new HpackDecoder(64)
    decoder.decode(hex("4803 3330 32"))
    expect(decoder.tableSize).toBe(42)
    const big = "x".repeat(40)
    const block = Uint8Array.from([0x40, 4, ...Buffer.from("name"), big.length, ...Buffer.from(big)])
    expect(decoder.decode(block)).toEqual([["name", big]])
    expect(decoder.table).toEqual([])
    expect(decoder.tableSize).toBe(0)
  })
})

describe("HPACK: malformed blocks", () => {
  test("index 0, an index past both tables, an integer or string cut short, and huge integers are errors", () => {
    const decoder = new HpackDecoder()
    expect(() => decoder.decode(hex("80"))).toThrow(HpackError)
    expect(() => decoder.decode(hex("ff00"))).toThrow(HpackError)
    expect(() => decoder.decode(hex("ff"))).toThrow(HpackError)
    expect(() => decoder.decode(hex("0003 6162"))).toThrow(HpackError)
    expect(() => decoder.decode(hex("7fff ffff ff0f"))).toThrow(HpackError)
  })

  test("a list past the bound stops decoding: fields referencing one big table entry cannot blow it up", () => {
    const decoder = new HpackDecoder()
    const value = "v".repeat(3000)
    const block = Uint8Array.from([
      0x40,
      1,
      0x6b,
      0x7f,
      ...[3000 - 127].flatMap(function bytes(n: number): Array<number> {
        return n >= 0x80 ? [(n % 0x80) | 0x80, ...bytes(Math.floor(n / 0x80))] : [n]
      }),
      ...Buffer.from(value)
    ])
    expect(decoder.decode(block, 65_536)).toEqual([["k", value]])
    // Each 0xbe byte repeats the 3 KB entry: 100 bytes would decode to 300 KB.
    expect(() => decoder.decode(new Uint8Array(100).fill(0xbe), 65_536)).toThrow(HeaderListTooLarge)
  })
})

describe("HPACK encoding", () => {
  test("gRPC's headers round trip, with static entries for the fields the table has", () => {
    const fields: ReadonlyArray<HeaderField> = [
      [":status", "200"],
      ["content-type", "application/grpc"],
      ["grpc-status", "13"],
      ["grpc-message", "plugin error: %E2%9C%97"],
      ["x-long", "y".repeat(300)]
    ]
    const block = encodeHeaders(fields)
    // ":status: 200" is static entry 8, one byte.
    expect(block[0]).toBe(0x88)
    const decoder = new HpackDecoder()
    expect(decoder.decode(block)).toEqual(fields.map(([n, v]) => [n, v]))
    // Nothing is added to the peer's table.
    expect(decoder.tableSize).toBe(0)
    // The encoder keeps no state: encoding again gives the same bytes.
    expect(encodeHeaders(fields)).toEqual(block)
  })

  test("every static entry and a latin1 value round trip", () => {
    const fields: ReadonlyArray<HeaderField> = [
      [":method", "POST"],
      [":path", "/index.html"],
      ["accept-encoding", "gzip, deflate"],
      ["user-agent", "caf\u00e9"]
    ]
    expect(new HpackDecoder().decode(encodeHeaders(fields))).toEqual(fields.map(([n, v]) => [n, v]))
  })
})
