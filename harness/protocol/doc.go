// Package protocol is the dynamic protocol layer of issue #16: it lets
// bidikit drive any gRPC bidirectional-streaming service, not only the
// bidikit protos, from a `protocol:` mapping in a scenario file.
//
// Three pieces, each usable alone:
//
//   - Descriptors: the method's messages, from gRPC server reflection
//     (Reflect: grpc.reflection.v1, falling back to v1alpha), a protoset
//     file (LoadProtoset) or .proto sources compiled at run time with
//     github.com/bufbuild/protocompile (CompileProtos) — no protoc needed.
//     Descriptors.Method resolves "acme.chat.v1.Chat/Stream" and says what
//     was wrong when it cannot (unknown service, unknown method, not bidi).
//   - Mapping: ParseSpec reads the `protocol:` block (strictly, with
//     file:line:col errors); Compile type-checks it against the descriptors
//     before anything connects — JSON templates for what clients send
//     (rendered with sample values and decoded into the client message,
//     unknown fields refused) and CEL expressions (cel.dev/cel-go) that
//     classify and read what the server sends. At run time Encode builds a
//     message from a template and Classify turns a server message into
//     Incoming values (Kind, Room, Seq, Sender, ...) — a slice, because one
//     message may carry a batch (a rule's each). Expressions that are only
//     field paths, has(), &&, || or ! (most of a mapping) are read straight
//     through protoreflect; the rest runs in CEL, with the same results.
//     Mapped and Missing say which fields the mapping reads, so a check
//     that needs an unmapped one can be not measurable naming it
//     (MissingReason).
//   - Stream: OpenStream / Mapping.Open open the bidi method over a
//     grpc.ClientConn with a codec for dynamic messages (and Raw bytes).
//
// What runs it: a `service: custom` scenario carries its `protocol:` block
// (harness/scenario decodes it with SpecFromNode and, when the descriptors
// are files, compiles it at parse time); harness/engine/custom is the
// driver on the engine's contract, compiling the mapping once per run (with
// reflection, over the run's connection) and speaking it for every virtual
// client. Spec.NotMeasurable says which checks a mapping cannot feed
// (needs.go), naming the fields; Spec.Echo marks a server that answers each
// stream only. See docs/custom-servers.md for the mapping format.
//
//	spec, err := protocol.ParseSpec("custom.yaml", data)
//	desc, err := protocol.LoadDescriptors(ctx, spec, conn, target)
//	m, err := protocol.Compile(spec, desc)
//	st, err := m.Open(ctx, conn, protocol.Values{Token: token})
//	join, err := m.Encode(protocol.OutJoin, protocol.Values{Room: m.RoomName(0)})
//	err = st.Send(join)
//	msg, err := st.Recv()
//	got, err := m.Classify(got[:0], msg) // got[i].Kind == protocol.Joined, ...
package protocol
