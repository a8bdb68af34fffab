package trace_test

import (
	"compress/gzip"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/collab/trace"
)

const concurrent = `{"kind":"concurrent","endContent":"hi!","numAgents":2,"txns":[
 {"parents":[],"agent":0,"patches":[[0,0,"hi"]]},
 {"parents":[0],"agent":1,"patches":[[2,0,"!"],[0,1,"h"], [ 1 , 0 , "\n\"é" ]]}]}`

var _ = Describe("Load", func() {
	It("reads plain and gzipped files, sequential and concurrent", func() {
		dir := GinkgoT().TempDir()
		plain := filepath.Join(dir, "c.json")
		Expect(os.WriteFile(plain, []byte(concurrent), 0o600)).To(Succeed())
		gz := filepath.Join(dir, "c.json.gz")
		f, err := os.Create(gz)
		Expect(err).NotTo(HaveOccurred())
		w := gzip.NewWriter(f)
		_, err = w.Write([]byte(concurrent))
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Close()).To(Succeed())
		Expect(f.Close()).To(Succeed())
		for _, p := range []string{plain, gz} {
			tr, err := trace.Load(p)
			Expect(err).NotTo(HaveOccurred())
			Expect(tr.Concurrent()).To(BeTrue())
			Expect(tr.NumAgents).To(Equal(2))
			Expect(tr.Patches()).To(Equal(4))
			Expect(tr.Txns[1]).To(Equal(trace.Txn{Agent: 1, Parents: []int{0},
				Patches: []trace.Patch{{Pos: 2, Ins: "!"}, {Pos: 0, Del: 1, Ins: "h"}, {Pos: 1, Ins: "\n\"é"}}}))
		}
	})

	It("names the file and the problem", func() {
		dir := GinkgoT().TempDir()
		bad := filepath.Join(dir, "bad.json")
		Expect(os.WriteFile(bad, []byte(`{"txns":[{"patches":[[0,"x"]]}]}`), 0o600)).To(Succeed())
		_, err := trace.Load(bad)
		Expect(err).To(MatchError(And(ContainSubstring(bad), ContainSubstring("2 elements"))))
		Expect(os.WriteFile(bad, []byte(`{"txns":[{"parents":[0],"patches":[]}]}`), 0o600)).To(Succeed())
		_, err = trace.Load(bad)
		Expect(err).To(MatchError(ContainSubstring("txn 0 has parent 0")))
		_, err = trace.Load(filepath.Join(dir, "absent.json"))
		Expect(err).To(HaveOccurred())
	})

	It("finds the module's own copy of the traces, or says what is missing", func() {
		GinkgoT().Setenv("BIDIKIT_TRACES", GinkgoT().TempDir())
		_, err := trace.Path("automerge-paper.json.gz")
		Expect(err).To(MatchError(ContainSubstring("automerge-paper.json.gz")))
		GinkgoT().Setenv("BIDIKIT_TRACES", "")
		d, err := trace.Dir()
		Expect(err).NotTo(HaveOccurred(), "the fixture directory testdata/traces is missing")
		Expect(filepath.ToSlash(d)).To(HaveSuffix("/"+trace.ModuleDir), "the module's copy comes before ../shared/traces")
		readme, err := os.ReadFile(filepath.Join(d, "README.md"))
		Expect(err).NotTo(HaveOccurred(), "the traces' attribution (testdata/traces/README.md) is missing")
		Expect(string(readme)).To(And(ContainSubstring("CC BY 4.0"), ContainSubstring("Joseph Gentle")))
		for _, name := range []string{"automerge-paper.json.gz", "clownschool.json.gz", "seph-blog1.json.gz"} {
			_, err := trace.Path(name)
			Expect(err).NotTo(HaveOccurred(), "fixture %s is missing", name)
		}
		p, err := trace.Path("automerge-paper.json.gz")
		Expect(err).NotTo(HaveOccurred())
		tr, err := trace.Load(p)
		Expect(err).NotTo(HaveOccurred())
		Expect(tr.Patches()).To(Equal(259778))
		Expect(len([]rune(tr.EndContent))).To(Equal(104852))
	})
})
