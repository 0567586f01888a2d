'use strict';
// Minimal WAV (RIFF) reading and writing: mono 16-bit PCM (format 1) and G.711 mu-law
// (format 7), the two encodings the Converse stream carries.

const fs = require('node:fs');

const FORMAT_PCM = 1;
const FORMAT_MULAW = 7;

/** Read a WAV file: { encoding: 'LINEAR16' | 'MULAW', sampleRateHz, data: Buffer }. */
function readWav(path) {
  const file = fs.readFileSync(path);
  if (file.length < 12 || file.toString('ascii', 0, 4) !== 'RIFF' || file.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${path}: not a WAV file`);
  }
  let fmt = null;
  let data = null;
  for (let pos = 12; pos + 8 <= file.length;) {
    const id = file.toString('ascii', pos, pos + 4);
    const size = file.readUInt32LE(pos + 4);
    const body = file.subarray(pos + 8, Math.min(file.length, pos + 8 + size));
    if (id === 'fmt ') {
      fmt = {
        format: body.readUInt16LE(0),
        channels: body.readUInt16LE(2),
        sampleRateHz: body.readUInt32LE(4),
        bitsPerSample: body.readUInt16LE(14),
      };
    } else if (id === 'data') {
      data = body;
    }
    pos += 8 + size + (size % 2); // chunks are padded to an even size
  }
  if (!fmt || !data) throw new Error(`${path}: WAV without fmt or data chunk`);
  if (fmt.channels !== 1) throw new Error(`${path}: ${fmt.channels} channels; send mono audio`);
  if (fmt.format === FORMAT_PCM && fmt.bitsPerSample === 16) {
    return { encoding: 'LINEAR16', sampleRateHz: fmt.sampleRateHz, data };
  }
  if (fmt.format === FORMAT_MULAW && fmt.bitsPerSample === 8) {
    return { encoding: 'MULAW', sampleRateHz: fmt.sampleRateHz, data };
  }
  throw new Error(`${path}: WAV format ${fmt.format}/${fmt.bitsPerSample} bit; use 16-bit PCM or mu-law`);
}

/** Write mono audio in the stream's encoding as a WAV file. */
function writeWav(path, encoding, sampleRateHz, data) {
  const mulaw = encoding === 'MULAW';
  const bytesPerSample = mulaw ? 1 : 2;
  const fmtSize = mulaw ? 18 : 16; // non-PCM formats carry a cbSize field
  const header = Buffer.alloc(12 + 8 + fmtSize + 8);
  header.write('RIFF', 0, 'ascii');
  const pad = data.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0); // chunks are padded to an even size
  header.writeUInt32LE(4 + 8 + fmtSize + 8 + data.length + pad.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(fmtSize, 16);
  header.writeUInt16LE(mulaw ? FORMAT_MULAW : FORMAT_PCM, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(sampleRateHz, 24);
  header.writeUInt32LE(sampleRateHz * bytesPerSample, 28);
  header.writeUInt16LE(bytesPerSample, 32);
  header.writeUInt16LE(8 * bytesPerSample, 34);
  const dataAt = 20 + fmtSize;
  header.write('data', dataAt, 'ascii');
  header.writeUInt32LE(data.length, dataAt + 4);
  fs.writeFileSync(path, Buffer.concat([header, data, pad]));
}

module.exports = { readWav, writeWav };
