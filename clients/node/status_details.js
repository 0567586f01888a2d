'use strict';
// The machine-readable reason of a fatal status: the google.rpc.Status in the
// `grpc-status-details-bin` trailer holds a google.rpc.ErrorInfo. Decoded by hand (a few
// protobuf wire-format fields) so that no extra .proto files are needed.

const ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';

/** The fields of one protobuf message: [{ number, value }] (varints as numbers, the rest as Buffers). */
function fields(buffer) {
  const out = [];
  let pos = 0;
  const varint = () => {
    let value = 0;
    let factor = 1;
    for (;;) {
      const byte = buffer[pos++];
      value += (byte & 0x7f) * factor;
      factor *= 128;
      if (byte < 0x80) return value;
    }
  };
  while (pos < buffer.length) {
    const key = varint();
    const wireType = key & 7;
    const number = Math.floor(key / 8);
    if (wireType === 0) out.push({ number, value: varint() });
    else if (wireType === 2) {
      const size = varint();
      out.push({ number, value: buffer.subarray(pos, pos + size) });
      pos += size;
    } else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wireType}`);
  }
  return out;
}

/** { reason, domain } from a call's status metadata, or null when there is no ErrorInfo. */
function errorInfo(metadata) {
  const [raw] = metadata ? metadata.get('grpc-status-details-bin') : [];
  if (!raw) return null;
  for (const detail of fields(Buffer.from(raw)).filter((f) => f.number === 3)) { // Status.details
    const any = fields(detail.value);
    const typeUrl = any.find((f) => f.number === 1);
    const value = any.find((f) => f.number === 2);
    if (typeUrl && value && typeUrl.value.toString() === ERROR_INFO) {
      const info = fields(value.value);
      const text = (n) => (info.find((f) => f.number === n) || { value: Buffer.alloc(0) }).value.toString();
      return { reason: text(1), domain: text(2) };
    }
  }
  return null;
}

module.exports = { errorInfo };
