// Command converse holds one conversation with a voice-engine server over the Converse
// stream: typed turns, a WAV's audio paced in real time, barge-in, reply audio to a WAV.
// Written from proto/voiceengine/v1/converse.proto and docs/protocol.md only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	pb "github.com/voice-engine/voice-engine/clients/go/gen/voiceengine/v1"
)

// received is one Recv result, handed from the reading goroutine to the main loop.
type received struct {
	message *pb.ConverseResponse
	err     error
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
			case *pb.ConverseResponse_ToolCall:
				send(&pb.ConverseRequest{Request: &pb.ConverseRequest_ToolResult{ToolResult: toolResult(o, e.ToolCall)}})
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

// toolResult answers a tool_call (a tool this client executes) with the result given for
// its name, or an error for a tool this client does not run.
func toolResult(o *options, call *pb.ToolCall) *pb.ToolResult {
	result, ok := o.toolResults[call.Name]
	if !ok {
		return &pb.ToolResult{ToolCallId: call.ToolCallId, Error: "this client runs no tool " + call.Name}
	}
	return &pb.ToolResult{ToolCallId: call.ToolCallId, ResultJson: result}
}
