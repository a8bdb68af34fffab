package protocol

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Descriptors is a set of protobuf files a method and its messages are
// resolved in, and where the set came from. Build one with Reflect,
// LoadProtoset, FromFileDescriptorSet or CompileProtos; it is read-only once
// built and safe for concurrent use.
type Descriptors struct {
	// Files holds every file of the set, imports included.
	Files *protoregistry.Files
	// Source says where the set came from, for messages:
	// "server reflection (grpc.reflection.v1) at 127.0.0.1:7070",
	// "protoset chat.protoset", ".proto sources chat.proto".
	Source string
	// services are the service names the source offers: what a server's
	// reflection listed, or every service the files define.
	services []string
}

// newDescriptors wraps files; services nil means "every service in files".
func newDescriptors(files *protoregistry.Files, source string, services []string) *Descriptors {
	if services == nil {
		files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
			for i := 0; i < fd.Services().Len(); i++ {
				services = append(services, string(fd.Services().Get(i).FullName()))
			}
			return true
		})
	}
	sort.Strings(services)
	return &Descriptors{Files: files, Source: source, services: services}
}

// Services lists the services the source offers, sorted.
func (d *Descriptors) Services() []string { return append([]string(nil), d.services...) }

// Method resolves "package.Service/Method" (also "/package.Service/Method"
// or "package.Service.Method") to a bidirectional-streaming method. Errors
// say what was wrong: a malformed name, an unknown service (listing the
// services offered), an unknown method (listing the service's methods and
// their kinds), or a method that is not bidi streaming (saying which kind it
// is).
func (d *Descriptors) Method(name string) (protoreflect.MethodDescriptor, error) {
	svcName, methodName, ok := splitMethod(name)
	if !ok {
		return nil, fmt.Errorf("method %q: want package.Service/Method, e.g. acme.chat.v1.Chat/Stream", name)
	}
	desc, err := d.Files.FindDescriptorByName(protoreflect.FullName(svcName))
	svc, isSvc := desc.(protoreflect.ServiceDescriptor)
	if err != nil || !isSvc {
		return nil, fmt.Errorf("method %q: unknown service %q in %s%s; services: %s",
			name, svcName, d.Source, suggest(svcName, d.services), listOrNone(d.services))
	}
	md := svc.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		var names, described []string
		for i := 0; i < svc.Methods().Len(); i++ {
			m := svc.Methods().Get(i)
			names = append(names, string(m.Name()))
			described = append(described, fmt.Sprintf("%s (%s)", m.Name(), MethodKind(m)))
		}
		return nil, fmt.Errorf("method %q: service %s has no method %q%s; methods: %s",
			name, svcName, methodName, suggest(methodName, names), listOrNone(described))
	}
	if !md.IsStreamingClient() || !md.IsStreamingServer() {
		return nil, fmt.Errorf("method %q is %s: rpc %s; a custom protocol needs a bidirectional-streaming method (rpc M(stream A) returns (stream B))",
			name, withArticle(MethodKind(md)), Signature(md))
	}
	return md, nil
}

// MethodKind names how md streams: "unary", "server-streaming",
// "client-streaming" or "bidi-streaming".
func MethodKind(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidi-streaming"
	case md.IsStreamingServer():
		return "server-streaming"
	case md.IsStreamingClient():
		return "client-streaming"
	}
	return "unary"
}

// Signature renders md as in a .proto file: "Get(acme.Req) returns (stream acme.Resp)".
func Signature(md protoreflect.MethodDescriptor) string {
	in, out := string(md.Input().FullName()), string(md.Output().FullName())
	if md.IsStreamingClient() {
		in = "stream " + in
	}
	if md.IsStreamingServer() {
		out = "stream " + out
	}
	return fmt.Sprintf("%s(%s) returns (%s)", md.Name(), in, out)
}

// FullMethod is md's gRPC path, "/package.Service/Method".
func FullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// splitMethod splits the accepted spellings of a method name.
func splitMethod(name string) (svc, method string, ok bool) {
	n := strings.TrimPrefix(strings.TrimSpace(name), "/")
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		svc, method = n[:i], n[i+1:]
	} else if i := strings.LastIndexByte(n, '.'); i >= 0 {
		svc, method = n[:i], n[i+1:]
	}
	if svc == "" || method == "" || strings.ContainsAny(svc, "/ ") || strings.ContainsAny(method, ". ") {
		return "", "", false
	}
	return svc, method, true
}

func withArticle(kind string) string {
	if kind == "unary" {
		return "a unary method"
	}
	return "a " + kind + " method"
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
