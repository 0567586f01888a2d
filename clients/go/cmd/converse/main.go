// Command converse holds one conversation with a voice-engine server over the Converse
// stream: typed turns, a WAV's audio paced in real time, barge-in, reply audio to a WAV.
// Written from proto/voiceengine/v1/converse.proto and docs/protocol.md only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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

type options struct {
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
		input:  &pb.AudioFormat{Encoding: pb.AudioEncoding_AUDIO_ENCODING_LINEAR16, SampleRateHz: 16000},
		output: &pb.AudioFormat{Encoding: pb.AudioEncoding_AUDIO_ENCODING_LINEAR16, SampleRateHz: 16000},
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

// player plays the assistant's audio on a virtual clock (this CLI has no speaker) and
// reports progress with `playback` messages, so an interruption keeps what was "heard".
type player struct {
	responseID   string
	receivedMs   uint32
	startedAt    time.Time
	lastReported int64
}

func (p *player) add(audio *pb.AudioOutput, report func()) {
	if p.responseID != audio.ResponseId {
		report() // the previous response's last report
		p.responseID, p.receivedMs, p.startedAt, p.lastReported = audio.ResponseId, 0, time.Now(), -1
	}
	if end := audio.OffsetMs + audio.DurationMs; end > p.receivedMs {
		p.receivedMs = end
	}
}

func (p *player) progress() (string, uint32, bool) {
	if p.responseID == "" {
		return "", 0, false
	}
	played := time.Since(p.startedAt).Milliseconds()
	if played > int64(p.receivedMs) {
		played = int64(p.receivedMs)
	}
	if played <= p.lastReported {
		return "", 0, false
	}
	p.lastReported = played
	return p.responseID, uint32(played), true
}

// pacer sends a WAV's chunks in real time from the main loop.
type pacer struct {
	pieces [][]byte
	next   int
	t0     time.Time
	step   time.Duration
	timer  *time.Timer
}

func (p *pacer) due() <-chan time.Time {
	if p == nil || p.timer == nil {
		return nil
	}
	return p.timer.C
}

func chunk(data []byte, size int) [][]byte {
	var pieces [][]byte
	for at := 0; at < len(data); at += size {
		end := at + size
		if end > len(data) {
			end = len(data)
		}
		pieces = append(pieces, data[at:end])
	}
	return pieces
}

type received struct {
	message *pb.ConverseResponse
	err     error
}

var statusNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

func eventKind(m *pb.ConverseResponse) (string, proto.Message) {
	r := m.ProtoReflect()
	field := r.WhichOneof(r.Descriptor().Oneofs().ByName("event"))
	if field == nil {
		return "", nil
	}
	return string(field.Name()), r.Get(field).Message().Interface()
}

var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func printEvent(o *options, m *pb.ConverseResponse) {
	kind, body := eventKind(m)
	if o.jsonOut {
		var data interface{} = json.RawMessage("{}")
		if audio, ok := body.(*pb.AudioOutput); ok {
			data = map[string]interface{}{
				"response_id": audio.ResponseId, "offset_ms": audio.OffsetMs,
				"duration_ms": audio.DurationMs, "bytes": len(audio.Data),
			}
		} else if body != nil {
			raw, err := jsonOptions.Marshal(body)
			if err == nil {
				data = json.RawMessage(raw)
			}
		}
		line, _ := json.Marshal(map[string]interface{}{
			"event": kind, "session_time_ms": m.SessionTimeMs, "data": data,
		})
		fmt.Println(string(line))
		return
	}
	switch e := body.(type) {
	case *pb.SessionStarted:
		fmt.Printf("started: session %s, call %s, assistant %s\n", e.SessionId, e.CallId, e.Assistant.GetName())
	case *pb.Transcript:
		if e.IsFinal {
			fmt.Printf("you: %s\n", e.Text)
		}
	case *pb.AssistantText:
		fmt.Print(e.Delta)
	case *pb.ResponseDone:
		fmt.Printf("\n[%s, %d ms of audio]\n", e.Status, e.AudioMs)
	case *pb.Interrupted:
		fmt.Printf("\n[interrupted after %d ms]\n", e.HeardMs)
	case *pb.Error:
		fmt.Printf("error %s: %s\n", e.Code, e.Message)
	case *pb.SessionEnded:
		fmt.Printf("ended: %s %s\n", e.Reason, e.Detail)
	}
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(run(o))
}

func run(o *options) int {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, o.target, grpc.WithInsecure(),
		// The server allows a keepalive ping at most every 5 minutes when it sends nothing.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	stream, err := pb.NewVoiceEngineServiceClient(conn).Converse(ctx)
	if err != nil {
		return report(o, err)
	}

	open := true // our side of the stream
	send := func(request *pb.ConverseRequest) {
		if open {
			_ = stream.Send(request) // io.EOF when the server has ended the call: Recv says why
		}
	}
	halfClose := func() {
		if open {
			open = false
			_ = stream.CloseSend()
		}
	}
	sendAudio := func(data []byte) {
		send(&pb.ConverseRequest{Request: &pb.ConverseRequest_Audio{Audio: &pb.AudioInput{Data: data}}})
	}
	sendText := func(text string) {
		send(&pb.ConverseRequest{Request: &pb.ConverseRequest_Text{Text: &pb.TextInput{Text: text}}})
	}

	events := make(chan received, 64)
	go func() {
		for {
			message, err := stream.Recv()
			events <- received{message, err}
			if err != nil {
				return
			}
		}
	}()

	chunkBytes := int(bytesPerMs(o.input)*float64(o.chunkMs) + 0.5)
	var pacing *pacer
	startPacing := func(audio *wavAudio) {
		pacing = &pacer{pieces: chunk(audio.Data, chunkBytes), t0: time.Now(),
			step: time.Duration(o.chunkMs) * time.Millisecond, timer: time.NewTimer(0)}
	}
	var audioOut []byte
	play := &player{}
	reportPlayback := func() {
		if id, played, ok := play.progress(); ok {
			send(&pb.ConverseRequest{Request: &pb.ConverseRequest_Playback{
				Playback: &pb.PlaybackProgress{ResponseId: id, PlayedMs: played}}})
		}
	}
	playbackTicker := time.NewTicker(250 * time.Millisecond)
	defer playbackTicker.Stop()

	seen := map[string]bool{}
	turnIndex := -1
	var waiting map[string]bool // response ids known when the current turn began
	var bargeIn *turn
	firstIsBargeIn := len(o.turns) > 0 && o.turns[0].kind == "barge-in"
	snapshot := func() map[string]bool {
		known := map[string]bool{}
		for id := range seen {
			known[id] = true
		}
		return known
	}
	nextTurn := func() {
		turnIndex++
		waiting = nil
		if turnIndex >= len(o.turns) {
			send(&pb.ConverseRequest{Request: &pb.ConverseRequest_End{End: &pb.EndSession{Reason: "client finished its turns"}}})
			halfClose()
			return
		}
		t := o.turns[turnIndex]
		waiting = snapshot()
		switch t.kind {
		case "text":
			sendText(t.text)
		case "wav":
			startPacing(t.audio)
		default:
			bargeIn = &t // starts with the next audio of a response
		}
	}
	sendAllThenHalfClose := func() {
		for _, t := range o.turns {
			if t.kind == "text" {
				sendText(t.text)
				continue
			}
			for _, piece := range chunk(t.audio.Data, chunkBytes) {
				sendAudio(piece)
			}
		}
		halfClose()
	}

	send(&pb.ConverseRequest{Request: &pb.ConverseRequest_Start{Start: &pb.StartSession{
		AssistantId: o.assistant,
		Metadata:    map[string]string{"channel": "go-client"},
		InputAudio:  o.input,
		OutputAudio: o.output,
		Options:     &pb.SessionOptions{TextOnly: o.textOnly},
	}}})

	for {
		select {
		case <-pacing.due():
			// Send every chunk whose time has come (real time, without drift).
			for pacing.next < len(pacing.pieces) && time.Since(pacing.t0) >= time.Duration(pacing.next)*pacing.step {
				sendAudio(pacing.pieces[pacing.next])
				pacing.next++
			}
			if pacing.next < len(pacing.pieces) {
				pacing.timer.Reset(time.Until(pacing.t0.Add(time.Duration(pacing.next) * pacing.step)))
			} else {
				pacing = nil
			}
		case <-playbackTicker.C:
			if !o.halfClose {
				reportPlayback()
			}
		case r := <-events:
			if r.err != nil {
				if o.out != "" {
					encoding := strings.TrimPrefix(o.output.Encoding.String(), "AUDIO_ENCODING_")
					if err := writeWav(o.out, encoding, o.output.SampleRateHz, audioOut); err != nil {
						fmt.Fprintln(os.Stderr, err)
					}
				}
				if r.err == io.EOF {
					return report(o, nil)
				}
				return report(o, r.err)
			}
			m := r.message
			printEvent(o, m)
			switch e := m.Event.(type) {
			case *pb.ConverseResponse_Started:
				switch {
				case o.halfClose:
					sendAllThenHalfClose()
				case !e.Started.Greeting || firstIsBargeIn:
					nextTurn()
				}
			case *pb.ConverseResponse_AssistantText:
				seen[e.AssistantText.ResponseId] = true
			case *pb.ConverseResponse_Audio:
				seen[e.Audio.ResponseId] = true
				audioOut = append(audioOut, e.Audio.Data...)
				if !o.halfClose {
					play.add(e.Audio, reportPlayback)
				}
				if bargeIn != nil {
					t := bargeIn
					bargeIn = nil
					waiting = snapshot()
					startPacing(t.audio)
				}
			case *pb.ConverseResponse_Interrupted:
				if play.responseID == e.Interrupted.ResponseId {
					*play = player{} // drop what is buffered of the cut response
				}
			case *pb.ConverseResponse_ResponseDone:
				id := e.ResponseDone.ResponseId
				seen[id] = true
				switch {
				case o.halfClose:
				case turnIndex < 0 && !firstIsBargeIn:
					nextTurn() // the greeting is over
				case waiting != nil && !waiting[id]:
					// The answer to this turn; a barge-in turn that follows speaks over the next response.
					if turnIndex+1 < len(o.turns) && o.turns[turnIndex+1].kind == "barge-in" {
						turnIndex++
						waiting = nil
						t := o.turns[turnIndex]
						bargeIn = &t
					} else {
						nextTurn()
					}
				}
			}
		}
	}
}

// report prints the call's final status; it returns the exit code (0 only for OK).
func report(o *options, err error) int {
	st := status.Convert(err)
	name := statusNames[st.Code()]
	// A fatal status carries a machine-readable reason: a google.rpc.ErrorInfo detail.
	reason := ""
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if o.jsonOut {
		fields := map[string]interface{}{"code": int(st.Code()), "name": name, "details": st.Message()}
		if reason != "" {
			fields["reason"] = reason
		}
		line, _ := json.Marshal(map[string]interface{}{"status": fields})
		fmt.Println(string(line))
	} else if st.Message() != "" {
		fmt.Printf("status: %s %s: %s\n", name, reason, st.Message())
	} else {
		fmt.Printf("status: %s\n", name)
	}
	if st.Code() == codes.OK {
		return 0
	}
	return 1
}
