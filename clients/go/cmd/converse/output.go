package main

import (
	"encoding/json"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/voice-engine/voice-engine/clients/go/gen/voiceengine/v1"
)

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
