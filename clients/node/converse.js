#!/usr/bin/env node
'use strict';
// A small Converse client: holds one conversation with a voice-engine server.
// Written from proto/voiceengine/v1/converse.proto and docs/protocol.md only.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { errorInfo } = require('./status_details');
const { readWav, writeWav } = require('./wav');

const USAGE = `usage: converse.js [options] [turns...]

Turns, held in the order given (each waits for the assistant's answer):
  --text TEXT        a typed turn
  --wav FILE         a spoken turn: the WAV's audio, paced in real time
  --barge-in FILE    speak FILE over the assistant's current response (the greeting, or the
                     answer to the turn before): sent as soon as its first audio arrives

Options:
  --target HOST:PORT       server (default 127.0.0.1:50051)
  --assistant ID           assistant id (default "default")
  --output-format ENC:HZ   reply audio format, e.g. linear16:16000, mulaw:8000 (default linear16:16000)
  --input-format ENC:HZ    caller audio format (default: the WAVs' format, else linear16:16000)
  --out FILE               write every response's audio, in order, to this WAV file
  --text-only              ask for no audio (assistant_text only)
  --tool-result NAME=JSON  run the client tool NAME: answer its tool_call with this JSON result
                           (repeatable; a tool_call for another tool is answered with an error)
  --chunk-ms MS            caller audio chunk length (default 40)
  --half-close             send everything at once, half-close, read to the end (no pacing,
                           no waiting between turns): the recipe of docs/protocol.md
  --timeout SEC            deadline of the whole call (default 60)
  --json                   print every event as one JSON line (audio as its byte count)
  --proto-dir DIR          where voiceengine/v1/converse.proto is (default: the repo's proto/)
Exit status: 0 when the call ended with status OK, 1 for any other status, 2 for bad usage.`;

function parseFormat(text, flag) {
  const match = /^(linear16|mulaw):(\d+)$/i.exec(text || '');
  if (!match) throw new UsageError(`${flag}: expected ENC:HZ such as linear16:16000 or mulaw:8000`);
  return { encoding: `AUDIO_ENCODING_${match[1].toUpperCase()}`, sample_rate_hz: Number(match[2]) };
}

class UsageError extends Error {}

function splitToolResult(text) {
  const at = text.indexOf('=');
  if (at < 1) throw new UsageError('--tool-result: expected NAME=JSON');
  const json = text.slice(at + 1);
  try {
    JSON.parse(json);
  } catch (err) {
    throw new UsageError(`--tool-result: not JSON: ${err.message}`);
  }
  return [text.slice(0, at), json];
}

// The answer to a tool_call (a tool this client executes): the result given for its name.
function toolResult(options, call) {
  const json = options.toolResults[call.name];
  if (json === undefined) {
    return { tool_call_id: call.tool_call_id, error: `this client runs no tool ${call.name}` };
  }
  return { tool_call_id: call.tool_call_id, result_json: json };
}

function parseArgs(argv) {
  const options = {
    target: '127.0.0.1:50051',
    assistant: 'default',
    turns: [],
    outputFormat: { encoding: 'AUDIO_ENCODING_LINEAR16', sample_rate_hz: 16000 },
    inputFormat: null,
    out: null,
    textOnly: false,
    chunkMs: 40,
    halfClose: false,
    timeoutSec: 60,
    json: false,
    protoDir: path.resolve(__dirname, '..', '..', 'proto'),
    toolResults: {},
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--text': options.turns.push({ kind: 'text', text: value() }); break;
      case '--wav': options.turns.push({ kind: 'wav', audio: readWav(value()) }); break;
      case '--barge-in': options.turns.push({ kind: 'barge-in', audio: readWav(value()) }); break;
      case '--target': options.target = value(); break;
      case '--assistant': options.assistant = value(); break;
      case '--output-format': options.outputFormat = parseFormat(value(), flag); break;
      case '--input-format': options.inputFormat = parseFormat(value(), flag); break;
      case '--out': options.out = value(); break;
      case '--text-only': options.textOnly = true; break;
      case '--tool-result': {
        const [name, json] = splitToolResult(value());
        options.toolResults[name] = json;
        break;
      }
      case '--chunk-ms': options.chunkMs = Number(value()); break;
      case '--half-close': options.halfClose = true; break;
      case '--timeout': options.timeoutSec = Number(value()); break;
      case '--json': options.json = true; break;
      case '--proto-dir': options.protoDir = value(); break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new UsageError(`unknown argument ${flag}`);
    }
  }
  const audioTurns = options.turns.filter((t) => t.audio);
  if (!options.inputFormat) {
    options.inputFormat = audioTurns.length
      ? { encoding: `AUDIO_ENCODING_${audioTurns[0].audio.encoding}`, sample_rate_hz: audioTurns[0].audio.sampleRateHz }
      : { encoding: 'AUDIO_ENCODING_LINEAR16', sample_rate_hz: 16000 };
  }
  for (const turn of audioTurns) {
    const { encoding, sample_rate_hz: rate } = options.inputFormat;
    if (`AUDIO_ENCODING_${turn.audio.encoding}` !== encoding || turn.audio.sampleRateHz !== rate) {
      throw new UsageError('every WAV must be in the input format (one format per session)');
    }
  }
  if (!(options.chunkMs >= 10 && options.chunkMs <= 200)) throw new UsageError('--chunk-ms: 10 to 200');
  return options;
}

function loadService(protoDir) {
  const definition = protoLoader.loadSync('voiceengine/v1/converse.proto', {
    includeDirs: [protoDir],
    keepCase: true, // field names as in the .proto (snake_case)
    longs: String,
    enums: String, // enum values by name
    defaults: true,
    oneofs: true, // `request` / `event` name the field that is set
  });
  return grpc.loadPackageDefinition(definition).voiceengine.v1.VoiceEngineService;
}

const BYTES_PER_SAMPLE = { AUDIO_ENCODING_LINEAR16: 2, AUDIO_ENCODING_MULAW: 1 };

function bytesPerMs(format) {
  return (format.sample_rate_hz * BYTES_PER_SAMPLE[format.encoding]) / 1000;
}

/**
 * Plays the assistant's audio on a virtual clock (this CLI has no speaker) and reports
 * progress with `playback` messages, so an interruption keeps only what was "heard".
 */
class Player {
  constructor(send) {
    this.send = send;
    this.current = null; // { responseId, receivedMs, startedAt, lastReported }
    this.timer = setInterval(() => this.report(), 250);
  }

  add(audio) {
    if (!this.current || this.current.responseId !== audio.response_id) {
      this.report(); // the previous response's last report
      this.current = { responseId: audio.response_id, receivedMs: 0, startedAt: Date.now(), lastReported: -1 };
    }
    this.current.receivedMs = Math.max(this.current.receivedMs, audio.offset_ms + audio.duration_ms);
  }

  /** `interrupted`: drop what is buffered; nothing more of that response is played. */
  drop(responseId) {
    if (this.current && this.current.responseId === responseId) this.current = null;
  }

  report() {
    const c = this.current;
    if (!c) return;
    const played = Math.min(c.receivedMs, Date.now() - c.startedAt);
    if (played > c.lastReported) {
      c.lastReported = played;
      this.send({ playback: { response_id: c.responseId, played_ms: Math.floor(played) } });
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}

function printEvent(options, message) {
  const kind = message.event;
  const body = message[kind];
  if (options.json) {
    const data = kind === 'audio'
      ? { response_id: body.response_id, offset_ms: body.offset_ms, duration_ms: body.duration_ms, bytes: body.data.length }
      : Object.fromEntries(Object.entries(body).filter(([key]) => !key.startsWith('_'))); // not the synthetic oneofs of `optional`
    console.log(JSON.stringify({ event: kind, session_time_ms: Number(message.session_time_ms), data }));
    return;
  }
  switch (kind) {
    case 'started':
      console.log(`started: session ${body.session_id}, call ${body.call_id}, assistant ${body.assistant.name}`);
      break;
    case 'transcript':
      if (body.is_final) console.log(`you: ${body.text}`);
      break;
    case 'assistant_text': process.stdout.write(body.delta); break;
    case 'response_done': console.log(`\n[${body.status}, ${body.audio_ms} ms of audio]`); break;
    case 'interrupted': console.log(`\n[interrupted after ${body.heard_ms} ms]`); break;
    case 'error': console.log(`error ${body.code}: ${body.message}`); break;
    case 'tool_call': console.log(`\n[tool_call ${body.name}(${body.arguments_json})]`); break;
    case 'tool_finished': console.log(`\n[tool ${body.name}: ${body.outcome} in ${body.latency_ms} ms]`); break;
    case 'transfer': console.log(`\n[transfer to ${body.target}]`); break;
    case 'ended': console.log(`ended: ${body.reason} ${body.detail}`); break;
    default: break;
  }
}

function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  const Service = loadService(options.protoDir);
  const client = new Service(options.target, grpc.credentials.createInsecure(), {
    // The server allows a keepalive ping at most every 5 minutes when it sends nothing.
    'grpc.keepalive_time_ms': 300000,
    'grpc.keepalive_timeout_ms': 20000,
  });
  const call = client.Converse({ deadline: Date.now() + options.timeoutSec * 1000 });
  let open = true; // our side of the stream
  const send = (request) => {
    if (open) call.write(request);
  };
  const halfClose = () => {
    if (open) {
      open = false;
      call.end();
    }
  };

  const audioOut = [];
  const player = options.halfClose ? null : new Player(send);
  const seenResponses = new Set();
  let turnIndex = -1;
  let waiting = null; // { known: Set of response ids before the turn } while a turn awaits its answer
  let bargeIn = null; // the barge-in turn waiting for the assistant's audio
  let pacing = null;

  const streamAudio = (audio, paced, then) => {
    const chunkBytes = Math.round(bytesPerMs(options.inputFormat) * options.chunkMs);
    const pieces = [];
    for (let at = 0; at < audio.data.length; at += chunkBytes) pieces.push(audio.data.subarray(at, at + chunkBytes));
    if (!paced) {
      for (const data of pieces) send({ audio: { data } });
      then();
      return;
    }
    const t0 = Date.now();
    let next = 0;
    const tick = () => {
      // Send every chunk whose time has come (real time, without drift).
      while (next < pieces.length && Date.now() - t0 >= next * options.chunkMs) send({ audio: { data: pieces[next++] } });
      if (next < pieces.length) {
        pacing = setTimeout(tick, Math.max(0, t0 + next * options.chunkMs - Date.now()));
      } else {
        pacing = null;
        then();
      }
    };
    tick();
  };

  const nextTurn = () => {
    turnIndex += 1;
    waiting = null;
    if (turnIndex >= options.turns.length) {
      send({ end: { reason: 'client finished its turns' } });
      halfClose();
      return;
    }
    const turn = options.turns[turnIndex];
    waiting = { known: new Set(seenResponses) };
    if (turn.kind === 'text') send({ text: { text: turn.text } });
    else if (turn.kind === 'wav') streamAudio(turn.audio, true, () => {});
    else bargeIn = turn; // starts with the next audio of a response
  };

  const sendAllThenHalfClose = () => {
    for (const turn of options.turns) {
      if (turn.kind === 'text') send({ text: { text: turn.text } });
      else streamAudio(turn.audio, false, () => {});
    }
    halfClose();
  };

  call.on('data', (message) => {
    printEvent(options, message);
    const kind = message.event;
    const body = message[kind];
    if (body && body.response_id) seenResponses.add(body.response_id);
    switch (kind) {
      case 'started':
        if (options.halfClose) sendAllThenHalfClose();
        else if (!body.greeting) nextTurn();
        else if (options.turns[0] && options.turns[0].kind === 'barge-in') nextTurn();
        break;
      case 'audio':
        audioOut.push(body.data);
        if (player) player.add(body);
        if (bargeIn) {
          const turn = bargeIn;
          bargeIn = null;
          waiting = { known: new Set(seenResponses) };
          streamAudio(turn.audio, true, () => {});
        }
        break;
      case 'interrupted':
        if (player) player.drop(body.response_id);
        break;
      case 'tool_call':
        send({ tool_result: toolResult(options, body) });
        break;
      case 'response_done':
        if (options.halfClose) break;
        if (turnIndex < 0 && !(options.turns[0] && options.turns[0].kind === 'barge-in')) nextTurn(); // the greeting is over
        else if (waiting && !waiting.known.has(body.response_id)) {
          // The answer to this turn; a barge-in turn that follows speaks over the next response.
          const following = options.turns[turnIndex + 1];
          if (following && following.kind === 'barge-in') {
            turnIndex += 1;
            waiting = null;
            bargeIn = following;
          } else {
            nextTurn();
          }
        }
        break;
      default:
        break;
    }
  });

  let finished = false;
  const finish = (status) => {
    if (finished) return;
    finished = true;
    if (pacing) clearTimeout(pacing);
    if (player) player.stop();
    if (options.out) writeWav(options.out, options.outputFormat.encoding.replace('AUDIO_ENCODING_', ''), options.outputFormat.sample_rate_hz, Buffer.concat(audioOut));
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === status.code) || String(status.code);
    const info = errorInfo(status.metadata); // a fatal status's machine-readable reason
    const reason = info ? { reason: info.reason } : {};
    if (options.json) console.log(JSON.stringify({ status: { code: status.code, name, details: status.details, ...reason } }));
    else console.log(`status: ${name}${info ? ` ${info.reason}` : ''}${status.details ? `: ${status.details}` : ''}`);
    client.close();
    process.exitCode = status.code === grpc.status.OK ? 0 : 1;
  };
  // Print the status once every event has been read: 'status' may come before 'end'.
  let status = null;
  let readAll = false;
  const maybeFinish = () => {
    if (status && (readAll || status.code !== grpc.status.OK)) finish(status);
  };
  call.on('status', (s) => {
    open = false;
    status = s;
    maybeFinish();
  });
  call.on('end', () => {
    readAll = true;
    maybeFinish();
  });
  call.on('error', () => {}); // a non-OK status; reported by the 'status' handler

  send({
    start: {
      assistant_id: options.assistant,
      metadata: { channel: 'node-client' },
      input_audio: options.inputFormat,
      output_audio: options.outputFormat,
      options: { text_only: options.textOnly },
    },
  });
}

main();
