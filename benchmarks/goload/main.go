// Command goload is benchmarks/load.py's caller, in Go: N calls in one process, each on a
// connection of its own, streaming 20 ms LINEAR16 16 kHz frames paced in real time (the
// greeting, then question, reply, pause, again). It costs a fraction of the Python client's
// CPU per call, so the callers disturb the engine's cores less (load.py --client go).
// It prints one JSON object, the same as load.py's Python client.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	pb "github.com/voice-engine/voice-engine/clients/go/gen/voiceengine/v1"
)

const (
	frameMs      = 20
	frameBytes   = 16000 * 2 * frameMs / 1000
	replyTimeout = 20 * time.Second
	lateAfter    = 10 * time.Millisecond
)

// question is one entry of the --questions file (written by load.py).
type question struct {
	Text       string `json:"text"`
	PCM        []byte `json:"pcm"` // base64 in the file; whole 20 ms frames
	LastSpeech int    `json:"last_speech"`
}

// turn is one question's figures; the JSON names are load.py's Turn fields.
type turn struct {
	ServerMs   *float64 `json:"server_ms"`
	FinalMs    *float64 `json:"final_ms"`
	ClientMs   *float64 `json:"client_ms"`
	LagFrames  *float64 `json:"lag_frames"`
	OverheadMs *float64 `json:"overhead_ms"`
	HeardRight *bool    `json:"heard_right"`
	Nth        int      `json:"nth"`
	AtSec      float64  `json:"at_sec"`
}

type report struct {
	Turns      []*turn  `json:"turns"`
	Errors     []string `json:"errors"`
	Frames     int      `json:"frames"`
	LateFrames int      `json:"late_frames"`
	Underruns  int      `json:"underruns"`
	CPUSec     float64  `json:"cpu_sec"`
	WallSec    float64  `json:"wall_sec"`
}

type options struct {
	target, assistant, questions string
	sessions                     int
	durationSec, rampSec         float64
	seed                         int64
	endSilenceMs                 int
	syncOrigin, syncPeriodSec    float64
	interim                      bool
}

func main() {
	var o options
	flag.StringVar(&o.target, "target", "127.0.0.1:50051", "engine address")
	flag.StringVar(&o.assistant, "assistant", "default", "assistant id")
	flag.StringVar(&o.questions, "questions", "", "JSON file of questions (load.py writes it)")
	flag.IntVar(&o.sessions, "sessions", 1, "calls")
	flag.Float64Var(&o.durationSec, "duration-sec", 30, "how long each call asks questions")
	flag.Float64Var(&o.rampSec, "ramp-sec", 3, "calls start at random within this")
	flag.Int64Var(&o.seed, "seed", 1, "random seed")
	flag.IntVar(&o.endSilenceMs, "end-silence-ms", 600, "the assistant's vad.end_silence_ms")
	flag.Float64Var(&o.syncOrigin, "sync-origin", 0, "epoch seconds: ask in shared slots from here")
	flag.Float64Var(&o.syncPeriodSec, "sync-period-sec", 8, "slot length with --sync-origin")
	flag.BoolVar(&o.interim, "interim", false, "ask for interim transcripts")
	flag.Parse()
	data, err := os.ReadFile(o.questions)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var questions []question
	if err := json.Unmarshal(data, &questions); err != nil || len(questions) == 0 {
		fmt.Fprintln(os.Stderr, "no questions:", err)
		os.Exit(2)
	}
	out := run(&o, questions)
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

func run(o *options, questions []question) *report {
	rng := rand.New(rand.NewSource(o.seed))
	t0 := time.Now()
	cpu0 := cpuSeconds()
	stopAt := t0.Add(seconds(o.rampSec + o.durationSec))
	reports := make([]*report, o.sessions)
	var wg sync.WaitGroup
	for i := range reports {
		startAt := t0.Add(seconds(rng.Float64() * o.rampSec))
		callRng := rand.New(rand.NewSource(rng.Int63()))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			reports[i] = session(o, questions, callRng, startAt, stopAt)
		}(i)
	}
	wg.Wait()
	all := &report{Turns: []*turn{}, Errors: []string{}}
	for _, r := range reports {
		all.Turns = append(all.Turns, r.Turns...)
		all.Errors = append(all.Errors, r.Errors...)
		all.Frames += r.Frames
		all.LateFrames += r.LateFrames
		all.Underruns += r.Underruns
	}
	all.CPUSec = cpuSeconds() - cpu0
	all.WallSec = time.Since(t0).Seconds()
	return all
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func ms(d time.Duration) *float64 {
	v := float64(d) / float64(time.Millisecond)
	return &v
}

// call is what the reading goroutine and the sending loop of one session share.
type call struct {
	mu            sync.Mutex
	sent          int       // frames sent
	current       *turn     // the question being answered
	expected      string    // its text
	eosAt, eotAt  time.Time // last speech frame sent; frame completing the end silence sent
	eotFrame      int       // which frame completes the end silence
	repliesDone   int       // response_done events so far
	readerDone    bool
	firstAudioAt  time.Time
	playedMs      int
	underruns     int
	endSilenceMs  int
	readerStopped chan struct{}
}

func (c *call) onEvent(m *pb.ConverseResponse, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.current
	switch {
	case m.GetAudio() != nil:
		if t != nil && t.ClientMs == nil && !c.eosAt.IsZero() {
			t.ClientMs = ms(now.Sub(c.eosAt))
			if !c.eotAt.IsZero() {
				t.OverheadMs = ms(now.Sub(c.eotAt))
			}
		}
		if c.playedMs == 0 {
			c.firstAudioAt = now
		} else if now.After(c.firstAudioAt.Add(time.Duration(c.playedMs+20) * time.Millisecond)) {
			c.underruns++
		}
		c.playedMs += int(m.GetAudio().GetDurationMs())
	case m.GetSpeechStopped() != nil && t != nil:
		done := float64(m.GetSpeechStopped().GetOffsetMs()) + float64(c.endSilenceMs)
		lag := math.Max(0, (float64(c.sent*frameMs)-done)/frameMs)
		t.LagFrames = &lag
	case m.GetTranscript() != nil && t != nil && m.GetTranscript().GetIsFinal():
		right := m.GetTranscript().GetText() == c.expected
		t.HeardRight = &right
	case m.GetMetrics() != nil && t != nil:
		if v := m.GetMetrics().EndOfSpeechToFirstAudioMs; v != nil {
			f := float64(*v)
			t.ServerMs = &f
		}
		if v := m.GetMetrics().EndOfSpeechToFinalTranscriptMs; v != nil {
			f := float64(*v)
			t.FinalMs = &f
		}
	case m.GetResponseDone() != nil:
		c.playedMs = 0
		c.repliesDone++
	}
}

func session(o *options, questions []question, rng *rand.Rand, startAt, stopAt time.Time) *report {
	r := &report{}
	time.Sleep(time.Until(startAt))
	ctx, cancel := context.WithDeadline(context.Background(), stopAt.Add(replyTimeout+30*time.Second))
	defer cancel()
	// A connection of its own, as a real caller has (and so SO_REUSEPORT can spread them).
	conn, err := grpc.DialContext(ctx, o.target, grpc.WithInsecure())
	if err != nil {
		r.Errors = append(r.Errors, "dial: "+err.Error())
		return r
	}
	defer conn.Close()
	stream, err := pb.NewVoiceEngineServiceClient(conn).Converse(ctx)
	if err != nil {
		r.Errors = append(r.Errors, "converse: "+err.Error())
		return r
	}
	wire := &pb.AudioFormat{Encoding: pb.AudioEncoding_AUDIO_ENCODING_LINEAR16, SampleRateHz: 16000}
	err = stream.Send(&pb.ConverseRequest{Request: &pb.ConverseRequest_Start{Start: &pb.StartSession{
		AssistantId: o.assistant, InputAudio: wire, OutputAudio: wire,
		Options: &pb.SessionOptions{InterimTranscripts: o.interim}}}})
	if err != nil {
		r.Errors = append(r.Errors, "start: "+err.Error())
		return r
	}
	c := &call{endSilenceMs: o.endSilenceMs, readerStopped: make(chan struct{})}
	go func() {
		defer close(c.readerStopped)
		for {
			m, err := stream.Recv()
			if err != nil {
				c.mu.Lock()
				c.readerDone = true
				c.mu.Unlock()
				return
			}
			c.onEvent(m, time.Now())
		}
	}()

	silence := &pb.ConverseRequest{Request: &pb.ConverseRequest_Audio{Audio: &pb.AudioInput{Data: make([]byte, frameBytes)}}}
	speech := make([][]*pb.ConverseRequest, len(questions))
	for i, q := range questions {
		for at := 0; at+frameBytes <= len(q.PCM); at += frameBytes {
			speech[i] = append(speech[i], &pb.ConverseRequest{Request: &pb.ConverseRequest_Audio{
				Audio: &pb.AudioInput{Data: q.PCM[at : at+frameBytes]}}})
		}
	}
	nextAt := time.Now()
	send := func(request *pb.ConverseRequest) bool {
		if delay := time.Until(nextAt); delay > 0 {
			time.Sleep(delay)
		} else if delay < -lateAfter {
			r.LateFrames++
		}
		if stream.Send(request) != nil {
			return false
		}
		c.mu.Lock()
		c.sent++
		if c.sent == c.eotFrame {
			c.eotAt = time.Now()
		}
		c.mu.Unlock()
		r.Frames++
		nextAt = nextAt.Add(frameMs * time.Millisecond)
		return true
	}
	// Silence until `replies` responses are done (waitReply) or until `until`.
	silenceUntil := func(replies int, waitReply bool, until time.Time) bool {
		for {
			c.mu.Lock()
			done, gone := c.repliesDone >= replies, c.readerDone
			c.mu.Unlock()
			if waitReply && done {
				return true
			}
			if gone {
				return false
			}
			if time.Now().After(until) {
				return !waitReply
			}
			if !send(silence) {
				return false
			}
		}
	}

	if !silenceUntil(1, true, time.Now().Add(replyTimeout)) {
		r.Errors = append(r.Errors, "no greeting")
	}
	q := rng.Intn(len(questions))
	for time.Now().Before(stopAt) {
		c.mu.Lock()
		gone, replies := c.readerDone, c.repliesDone
		c.mu.Unlock()
		if gone {
			break
		}
		pause := time.Now().Add(seconds(1 + 3*rng.Float64()))
		if o.syncOrigin > 0 {
			origin := time.Unix(0, int64(o.syncOrigin*1e9))
			period := seconds(o.syncPeriodSec)
			slots := math.Ceil(float64(time.Now().Add(time.Second).Sub(origin)) / float64(period))
			pause = origin.Add(time.Duration(slots) * period)
		}
		silenceUntil(0, false, pause)
		if !time.Now().Before(stopAt) {
			break
		}
		t := &turn{Nth: len(r.Turns) + 1, AtSec: time.Since(startAt).Seconds()}
		c.mu.Lock()
		c.current, c.expected = t, questions[q].Text
		c.eosAt, c.eotAt = time.Time{}, time.Time{}
		c.eotFrame = c.sent + questions[q].LastSpeech + 1 + o.endSilenceMs/frameMs
		c.mu.Unlock()
		for i, request := range speech[q] {
			if !send(request) {
				break
			}
			if i == questions[q].LastSpeech {
				c.mu.Lock()
				c.eosAt = time.Now()
				c.mu.Unlock()
			}
		}
		ok := silenceUntil(replies+1, true, time.Now().Add(replyTimeout))
		r.Turns = append(r.Turns, t)
		if !ok {
			c.mu.Lock()
			gone := c.readerDone
			c.mu.Unlock()
			if gone {
				r.Errors = append(r.Errors, "stream ended")
			} else {
				r.Errors = append(r.Errors, "no reply")
			}
			break
		}
		q = (q + 1) % len(questions)
	}
	_ = stream.Send(&pb.ConverseRequest{Request: &pb.ConverseRequest_End{End: &pb.EndSession{}}})
	_ = stream.CloseSend()
	select {
	case <-c.readerStopped:
	case <-time.After(15 * time.Second):
		r.Errors = append(r.Errors, "the call did not end")
	}
	c.mu.Lock()
	r.Underruns = c.underruns
	c.mu.Unlock()
	return r
}
