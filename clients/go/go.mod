// For users with the Go module proxy: `buf generate` (from the repository root) writes the
// stubs to gen/, then `go mod tidy && go build ./cmd/converse`. CI builds the same code
// in GOPATH mode from Debian's packages instead (scripts/clients.sh); the versions below
// are the ones those packages carry, so both builds compile the same library code.
module github.com/voice-engine/voice-engine/clients/go

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
