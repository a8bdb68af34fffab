package custom_test

import (
	"os"
	"path/filepath"
	"sort"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/harness/broken"
	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// liveScenario is harness/broken's chat-live scenario (chatters and
// lurkers in two rooms, no fault), shorter (so no-lost-acks' grace is
// shorter too: a membership shorter than the grace is held to nothing), for
// service (chat, or custom
// with its protocol block appended).
func liveScenario(service, protocolBlock string) string {
	return `name: live-` + service + `
service: ` + service + `
seed: 7
duration: 2s
ramp: 300ms
settle: 300ms
roles:
  - {name: chatter, count: 8, behaviour: chatter, rooms: 2, rate: 8/s}
  - {name: lurker, count: 3, behaviour: lurker, rooms: 2}
checks: [total-order, delivery-order, no-gaps, no-duplicates, {no-lost-acks: {grace: 500ms}}, sender-fifo, realtime-order, status-codes]
` + protocolBlock
}

// protosetFile writes the FileDescriptorSet of fd and its imports as
// dir/name.
func protosetFile(dir, name string, fd protoreflect.FileDescriptor) {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := 0; i < f.Imports().Len(); i++ {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, name), data, 0o644)).To(Succeed())
}

// failed lists the checks of res that failed, sorted.
func failed(res result.Scenario) []string {
	var out []string
	for _, v := range res.Checks {
		if v.Status == check.Fail {
			out = append(out, v.Name)
		}
	}
	sort.Strings(out)
	return out
}

var _ = Describe("the broken chat servers through a protocol mapping", func() {
	DescribeTable("fail the same checks as through the native chat driver",
		func(ctx SpecContext, d broken.ChatDefect, mustFail string) {
			dir := GinkgoT().TempDir()
			// The corpus servers have no reflection: the mapping names a
			// protoset, so it is compiled when the scenario is parsed.
			protosetFile(dir, "chat.protoset", chatv1.File_bidikit_chat_v1_chat_proto)
			native := parseIn(dir, "native.yaml", liveScenario("chat", ""))
			mapped := parseIn(dir, "mapped.yaml", liveScenario("custom", chatProtocol("descriptors: {protoset: chat.protoset}")))

			results := map[string]result.Scenario{}
			for name, s := range map[string]*scenario.Scenario{"native": native, "mapped": mapped} {
				srv, err := broken.StartChat(d)
				Expect(err).NotTo(HaveOccurred())
				res, _ := run(ctx, s, srv.Addr(), "")
				srv.Stop()
				results[name] = res
			}
			Expect(failed(results["native"])).To(ContainElement(mustFail), describe(results["native"]))
			Expect(failed(results["mapped"])).To(Equal(failed(results["native"])),
				"through the mapping:\n%s\nnative:\n%s", describe(results["mapped"]), describe(results["native"]))
		},
		Entry("SeqGap: no-gaps", broken.SeqGap, "no-gaps", SpecTimeout(time.Minute)),
		Entry("ReorderSome: delivery-order", broken.ReorderSome, "delivery-order", SpecTimeout(time.Minute)),
		Entry("AckNeverStored: no-lost-acks", broken.AckNeverStored, "no-lost-acks", SpecTimeout(time.Minute)),
	)
})
