package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	pb "github.com/voice-engine/voice-engine/clients/go/gen/voiceengine/v1"
)

const usageText = `usage: converse [options] [turns...]

Turns, held in the order given (each waits for the assistant's answer):
  -text TEXT        a typed turn
  -wav FILE         a spoken turn: the WAV's audio, paced in real time
  -barge-in FILE    speak FILE over the assistant's current response (the greeting, or the
                    answer to the turn before): sent as soon as its first audio arrives
Options:
`

type turn struct {
	kind  string // "text", "wav", "barge-in"
	text  string
	audio *wavAudio
}

// turnFlag appends a turn of one kind to a shared list, so turns keep their order.
type turnFlag struct {
	kind  string
	turns *[]turn
}

func (f turnFlag) String() string { return "" }

func (f turnFlag) Set(value string) error {
	if f.kind == "text" {
		*f.turns = append(*f.turns, turn{kind: "text", text: value})
		return nil
	}
	audio, err := readWav(value)
	if err != nil {
		return err
	}
	*f.turns = append(*f.turns, turn{kind: f.kind, audio: audio})
	return nil
}

type formatFlag struct{ format *pb.AudioFormat }

var formatPattern = regexp.MustCompile(`(?i)^(linear16|mulaw):(\d+)$`)

func (f formatFlag) String() string { return "" }

func (f formatFlag) Set(value string) error {
	match := formatPattern.FindStringSubmatch(value)
	if match == nil {
		return errors.New("expected ENC:HZ such as linear16:16000 or mulaw:8000")
	}
	rate, err := strconv.ParseUint(match[2], 10, 32)
	if err != nil {
		return err
	}
	f.format.Encoding = pb.AudioEncoding(pb.AudioEncoding_value["AUDIO_ENCODING_"+strings.ToUpper(match[1])])
	f.format.SampleRateHz = uint32(rate)
	return nil
}

// toolResultFlag collects -tool-result NAME=JSON: the results of the client tools this
// client runs.
type toolResultFlag map[string]string

func (f toolResultFlag) String() string { return "" }

func (f toolResultFlag) Set(value string) error {
	name, result, found := strings.Cut(value, "=")
	if !found || name == "" {
		return errors.New("expected NAME=JSON")
	}
	if !json.Valid([]byte(result)) {
		return fmt.Errorf("not JSON: %q", result)
	}
	f[name] = result
	return nil
}

type options struct {
	toolResults            toolResultFlag
	target, assistant, out string
	turns                  []turn
	input, output          *pb.AudioFormat
	inputSet               bool
	textOnly, halfClose    bool
	jsonOut                bool
	chunkMs                int
	timeout                time.Duration
}

func parseOptions(args []string) (*options, error) {
	o := &options{
		toolResults: toolResultFlag{},
		input:       &pb.AudioFormat{Encoding: pb.AudioEncoding_AUDIO_ENCODING_LINEAR16, SampleRateHz: 16000},
		output:      &pb.AudioFormat{Encoding: pb.AudioEncoding_AUDIO_ENCODING_LINEAR16, SampleRateHz: 16000},
	}
	fs := flag.NewFlagSet("converse", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.Var(turnFlag{"text", &o.turns}, "text", "a typed turn")
	fs.Var(turnFlag{"wav", &o.turns}, "wav", "a spoken turn from a WAV `file`, paced in real time")
	fs.Var(turnFlag{"barge-in", &o.turns}, "barge-in", "a WAV `file` spoken over the current response")
	fs.StringVar(&o.target, "target", "127.0.0.1:50051", "server `host:port`")
	fs.StringVar(&o.assistant, "assistant", "default", "assistant `id`")
	fs.Var(formatFlag{o.output}, "output-format", "reply audio `ENC:HZ`, e.g. linear16:16000 or mulaw:8000 (default linear16:16000)")
	inputFormat := &pb.AudioFormat{}
	fs.Var(formatFlag{inputFormat}, "input-format", "caller audio `ENC:HZ` (default: the WAVs' format, else linear16:16000)")
	fs.StringVar(&o.out, "out", "", "write every response's audio, in order, to this WAV `file`")
	fs.BoolVar(&o.textOnly, "text-only", false, "ask for no audio (assistant_text only)")
	fs.Var(o.toolResults, "tool-result", "run the client tool NAME: answer its tool_call with this result, `NAME=JSON` (repeatable)")
	fs.IntVar(&o.chunkMs, "chunk-ms", 40, "caller audio chunk length in `ms`")
	fs.BoolVar(&o.halfClose, "half-close", false, "send everything at once, half-close, read to the end")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "deadline of the whole call")
	fs.BoolVar(&o.jsonOut, "json", false, "print every event as one JSON line (audio as its byte count)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if inputFormat.SampleRateHz != 0 {
		o.input, o.inputSet = inputFormat, true
	}
	for _, t := range o.turns {
		if t.audio == nil {
			continue
		}
		encoding := pb.AudioEncoding(pb.AudioEncoding_value["AUDIO_ENCODING_"+t.audio.Encoding])
		if !o.inputSet {
			o.input = &pb.AudioFormat{Encoding: encoding, SampleRateHz: t.audio.SampleRateHz}
			o.inputSet = true
		}
		if encoding != o.input.Encoding || t.audio.SampleRateHz != o.input.SampleRateHz {
			return nil, errors.New("every WAV must be in the input format (one format per session)")
		}
	}
	if o.chunkMs < 10 || o.chunkMs > 200 {
		return nil, errors.New("-chunk-ms: 10 to 200")
	}
	return o, nil
}

func bytesPerMs(f *pb.AudioFormat) float64 {
	perSample := 2.0
	if f.Encoding == pb.AudioEncoding_AUDIO_ENCODING_MULAW {
		perSample = 1
	}
	return float64(f.SampleRateHz) * perSample / 1000
}
