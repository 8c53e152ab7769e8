/**
 * HPACK (RFC 7541), the header compression of HTTP/2, for the plugin's
 * HTTP/2 server (Http2Session.ts): a full decoder (static and dynamic
 * tables, table size updates, Huffman-coded strings) and a plain encoder.
 *
 * The encoder never adds to the peer's dynamic table: it sends an entry of
 * the static table when one matches and literals otherwise, without
 * Huffman. A gRPC response is a handful of short headers, so this costs a
 * few bytes and spares keeping a table per connection in step with the peer.
 *
 * Header names and values are read and written as latin1: one character per
 * byte, so lengths and table sizes are counted in octets as the RFC counts
 * them. Pure: no I/O here.
 */
import { HuffmanDecodeTree } from "./HuffmanCode.ts"

/** One header field, name then value. */
export type HeaderField = readonly [name: string, value: string]

/** A header block HPACK cannot decode: a connection error of type COMPRESSION_ERROR. */
export class HpackError extends Error {}

/** A header list decoding to more than the bound given: the peer ignored our SETTINGS_MAX_HEADER_LIST_SIZE. */
export class HeaderListTooLarge extends Error {}

/** RFC 7541 Appendix A. */
const StaticTable: ReadonlyArray<HeaderField> = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""]
]

/** The size of an entry as the RFC counts it (4.1): its octets and 32. */
const entrySize = (field: HeaderField) => field[0].length + field[1].length + 32

/** The Huffman decoding tree (HuffmanCode.ts says how it is laid out). */
const huffmanTree = Int16Array.from(HuffmanDecodeTree)

const EndOfString = 256

/** Decodes a Huffman-coded string (RFC 7541 5.2): padding must be at most 7 bits, all ones; EOS may not appear. */
export const huffmanDecode = (bytes: Uint8Array): string => {
  let out = ""
  let node = 0
  // Bits read since the last symbol, and whether all of them were ones: what is left at the end is padding.
  let depth = 0
  let allOnes = true
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >> bit) & 1
      const next = huffmanTree[2 * node + one] as number
      depth++
      allOnes &&= one === 1
      if (next < 0) {
        const symbol = -next - 1
        if (symbol === EndOfString) throw new HpackError("a Huffman string holds EOS")
        out += String.fromCharCode(symbol)
        node = 0
        depth = 0
        allOnes = true
      } else node = next
    }
  }
  if (depth > 7 || !allOnes) throw new HpackError("a Huffman string's padding is not a prefix of EOS")
  return out
}

/** Integers over this are a peer's mistake or attack: no header, table or index of ours comes near. */
const MaxInteger = 2 ** 28

/** Decodes an HPACK header block, keeping the dynamic table from block to block as its peer's encoder does. */
export class HpackDecoder {
  private readonly dynamic: Array<HeaderField> = []
  private dynamicSize = 0
  private maxSize: number

  /** `limit` is our SETTINGS_HEADER_TABLE_SIZE: the largest table the peer may ask for. */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit
  }

  /** The dynamic table's current size in octets (RFC 7541 4.1), for tests. */
  get tableSize(): number {
    return this.dynamicSize
  }

  /** The dynamic table, newest first, for tests. */
  get table(): ReadonlyArray<HeaderField> {
    return this.dynamic
  }

  /**
   * Decodes one complete header block. Throws HpackError on a malformed
   * block, HeaderListTooLarge once the fields decoded exceed `maxListSize`
   * (counted as SETTINGS_MAX_HEADER_LIST_SIZE is: octets and 32 per field).
   */
  decode(block: Uint8Array, maxListSize = Infinity): Array<HeaderField> {
    const fields: Array<HeaderField> = []
    let listSize = 0
    let position = 0
    let sawField = false

    const integer = (prefixBits: number): number => {
      if (position >= block.length) throw new HpackError("a header block ends inside an integer")
      const mask = (1 << prefixBits) - 1
      let value = (block[position++] as number) & mask
      if (value < mask) return value
      let shift = 0
      for (;;) {
        if (position >= block.length) throw new HpackError("a header block ends inside an integer")
        const byte = block[position++] as number
        value += (byte & 0x7f) * 2 ** shift
        shift += 7
        if (value > MaxInteger) throw new HpackError("an integer too large")
        if ((byte & 0x80) === 0) return value
      }
    }

    const string = (): string => {
      if (position >= block.length) throw new HpackError("a header block ends before a string")
      const huffman = ((block[position] as number) & 0x80) !== 0
      const length = integer(7)
      if (position + length > block.length) throw new HpackError("a string runs past the header block")
      const bytes = block.subarray(position, position + length)
      position += length
      return huffman ? huffmanDecode(bytes) : latin1(bytes)
    }

    const emit = (field: HeaderField) => {
      listSize += entrySize(field)
      if (listSize > maxListSize) throw new HeaderListTooLarge(`a header list over ${maxListSize} octets`)
      fields.push(field)
    }

    while (position < block.length) {
      const first = block[position] as number
      if (first & 0x80) {
        // Indexed field (6.1).
        emit(this.entry(integer(7)))
        sawField = true
      } else if (first & 0x40) {
        // Literal with incremental indexing (6.2.1).
        const index = integer(6)
        const field: HeaderField = [index === 0 ? string() : this.entry(index)[0], string()]
        emit(field)
        this.insert(field)
        sawField = true
      } else if (first & 0x20) {
        // Dynamic table size update (6.3): only at the start of a block (4.2).
        if (sawField) throw new HpackError("a dynamic table size update after a header field")
        const size = integer(5)
        if (size > this.limit) throw new HpackError(`a dynamic table size of ${size}, over our ${this.limit}`)
        this.maxSize = size
        this.evict(0)
      } else {
        // Literal without indexing (6.2.2) or never indexed (6.2.3): the same to a decoder.
        const index = integer(4)
        emit([index === 0 ? string() : this.entry(index)[0], string()])
        sawField = true
      }
    }
    return fields
  }

  private entry(index: number): HeaderField {
    if (index === 0) throw new HpackError("header index 0")
    const field = index <= StaticTable.length ? StaticTable[index - 1] : this.dynamic[index - StaticTable.length - 1]
    if (field === undefined) throw new HpackError(`header index ${index} is past the tables`)
    return field
  }

  /** Adds an entry, evicting the oldest for room; one larger than the whole table empties it (4.4). */
  private insert(field: HeaderField) {
    const size = entrySize(field)
    this.evict(size)
    if (size > this.maxSize) return
    this.dynamic.unshift(field)
    this.dynamicSize += size
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  private evict(room: number) {
    while (this.dynamic.length > 0 && this.dynamicSize + room > this.maxSize) {
      const oldest = this.dynamic.pop() as HeaderField
      this.dynamicSize -= entrySize(oldest)
    }
  }
}

const latin1 = (bytes: Uint8Array): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i += 4096) out += String.fromCharCode(...bytes.subarray(i, i + 4096))
  return out
}

/** Static entries by "name\0value" and by name alone (the first index of each). */
const staticIndex = (() => {
  const byField = new Map<string, number>()
  const byName = new Map<string, number>()
  StaticTable.forEach(([name, value], i) => {
    if (!byField.has(`${name}\0${value}`)) byField.set(`${name}\0${value}`, i + 1)
    if (!byName.has(name)) byName.set(name, i + 1)
  })
  return { byField, byName }
})()

/**
 * Encodes a header list: static entries where one matches, literals
 * without indexing otherwise, no Huffman. Names must be lowercase and
 * every character within latin1 (gRPC's headers are ASCII).
 */
export const encodeHeaders = (fields: ReadonlyArray<HeaderField>): Uint8Array => {
  const out: Array<number> = []
  const integer = (value: number, prefixBits: number, firstBits: number) => {
    const mask = (1 << prefixBits) - 1
    if (value < mask) {
      out.push(firstBits | value)
      return
    }
    out.push(firstBits | mask)
    let rest = value - mask
    while (rest >= 0x80) {
      out.push((rest % 0x80) | 0x80)
      rest = Math.floor(rest / 0x80)
    }
    out.push(rest)
  }
  const string = (text: string) => {
    integer(text.length, 7, 0)
    for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i) & 0xff)
  }
  for (const [name, value] of fields) {
    const indexed = staticIndex.byField.get(`${name}\0${value}`)
    if (indexed !== undefined) {
      integer(indexed, 7, 0x80)
      continue
    }
    const named = staticIndex.byName.get(name)
    if (named !== undefined) integer(named, 4, 0)
    else {
      out.push(0)
      string(name)
    }
    string(value)
  }
  return Uint8Array.from(out)
}
