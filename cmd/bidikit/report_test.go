package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("sharded runs: bidikit run --shard and bidikit report merge", func() {
	var dir string
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
	})

	DescribeTable("run exits 2 on a bad shard flag, saying what is wrong",
		func(ctx SpecContext, args []string, msg string) {
			code, _, stderr := runBidikit(ctx, dir, append([]string{"run", "tiny.yaml", "--target", "127.0.0.1:1"}, args...)...)
			Expect(code).To(Equal(2), stderr)
			Expect(stderr).To(ContainSubstring(msg))
		},
		Entry("a shard past the count", []string{"--shard", "3/2"}, `--shard "3/2": shard 3 of 2 does not exist; shards are numbered 1..2`, SpecTimeout(time.Minute)),
		Entry("shard 0 (1-based)", []string{"--shard", "0/2"}, `shard 0 of 2 does not exist`, SpecTimeout(time.Minute)),
		Entry("no shards", []string{"--shard", "0/0"}, `--shard "0/0": the number of shards must be at least 1`, SpecTimeout(time.Minute)),
		Entry("not i/n", []string{"--shard", "x"}, `--shard "x": want i/n`, SpecTimeout(time.Minute)),
		Entry("not numbers", []string{"--shard", "a/b"}, `--shard "a/b": want i/n`, SpecTimeout(time.Minute)),
		Entry("--shard with --shard-count", []string{"--shard", "1/2", "--shard-count", "2"}, "exclude each other", SpecTimeout(time.Minute)),
		Entry("--shard-index-env alone", []string{"--shard-index-env", "HOME"}, "--shard-index-env and --shard-count go together", SpecTimeout(time.Minute)),
		Entry("an unset index variable", []string{"--shard-index-env", "BIDIKIT_NO_SUCH_VAR", "--shard-count", "2"}, "BIDIKIT_NO_SUCH_VAR: the environment variable is not set", SpecTimeout(time.Minute)),
	)

	It("needs --target to shard: every shard must drive the same server", func(ctx SpecContext) {
		code, _, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--shard", "1/2")
		Expect(code).To(Equal(2))
		Expect(stderr).To(ContainSubstring("--shard 1/2 needs --target"))
	}, SpecTimeout(time.Minute))

	It("report merge exits 2 without files or with a missing shard", func(ctx SpecContext) {
		code, _, stderr := runBidikit(ctx, dir, "report", "merge")
		Expect(code).To(Equal(2), stderr)
		code, _, stderr = runBidikit(ctx, dir, "report", "merge", "nope.raw")
		Expect(code).To(Equal(2), stderr)
		Expect(stderr).To(ContainSubstring("nope.raw"))
	}, SpecTimeout(time.Minute))

	It("runs two shards against one server and merges them into one passing report", func(ctx SpecContext) {
		srv := startServe(ctx)
		code, stdout, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--target", srv.grpc, "--seed", "3",
			"--shard", "1/2", "--raw-out", "a.raw", "--quiet")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring("shard 1/2"))
		code, stdout, stderr = runBidikitEnv(ctx, dir, []string{"IDX=1"}, "run", "tiny.yaml", "--target", srv.grpc, "--seed", "3",
			"--shard-index-env", "IDX", "--shard-count", "2", "--raw-out", "b.raw", "--quiet")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring("shard 2/2"))

		code, stdout, stderr = runBidikit(ctx, dir, "report", "merge", "b.raw", "a.raw", "--report", "json", "--out", "merged.json", "--report", "text")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stdout).To(ContainSubstring("total-order"))
		data, err := os.ReadFile(filepath.Join(dir, "merged.json"))
		Expect(err).NotTo(HaveOccurred())
		var run struct {
			Passed    bool  `json:"passed"`
			Seed      int64 `json:"seed"`
			Scenarios []struct {
				Clients int `json:"clients"`
				Checks  []struct {
					Status string `json:"status"`
				} `json:"checks"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal(data, &run)).To(Succeed())
		Expect(run.Passed).To(BeTrue())
		Expect(run.Seed).To(BeEquivalentTo(3))
		Expect(run.Scenarios).To(HaveLen(1))
		Expect(run.Scenarios[0].Clients).To(Equal(2))
		Expect(run.Scenarios[0].Checks).To(HaveLen(2))

		// A shard of another seed does not belong to the run.
		code, _, stderr = runBidikit(ctx, dir, "run", "tiny.yaml", "--target", srv.grpc, "--seed", "4",
			"--shard", "2/2", "--raw-out", "c.raw", "--quiet")
		Expect(code).To(Equal(0), stderr)
		code, _, stderr = runBidikit(ctx, dir, "report", "merge", "a.raw", "c.raw")
		Expect(code).To(Equal(2))
		Expect(stderr).To(And(ContainSubstring("seed 3"), ContainSubstring("seed 4")))
		code, _, stderr = runBidikit(ctx, dir, "report", "merge", "a.raw")
		Expect(code).To(Equal(2))
		Expect(strings.Contains(stderr, "missing shard 2/2")).To(BeTrue(), stderr)
	}, SpecTimeout(2*time.Minute))
})
