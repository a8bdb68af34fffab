package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/harness/scenario"
)

// k8sObject is the part of a Kubernetes manifest the specs below read.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    *int   `yaml:"completions"`
		Parallelism    *int   `yaml:"parallelism"`
		Template       struct {
			Spec struct {
				RestartPolicy string         `yaml:"restartPolicy"`
				Containers    []k8sContainer `yaml:"containers"`
				Volumes       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

var k8sKinds = map[string]string{"ConfigMap": "v1", "PersistentVolumeClaim": "v1", "Job": "batch/v1"}

// loadManifests decodes every deploy/kubernetes/*.yaml, by kind and name.
func loadManifests() map[string]*k8sObject {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).NotTo(BeEmpty())
	out := map[string]*k8sObject{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		Expect(err).NotTo(HaveOccurred())
		var o k8sObject
		if err := yaml.Unmarshal(data, &o); err != nil {
			Fail(fmt.Sprintf("%s: %v", f, err))
		}
		want, known := k8sKinds[o.Kind]
		Expect(known).To(BeTrue(), "%s: kind %q", f, o.Kind)
		Expect(o.APIVersion).To(Equal(want), "%s: apiVersion of a %s", f, o.Kind)
		Expect(o.Metadata.Name).NotTo(BeEmpty(), f)
		out[o.Kind+"/"+o.Metadata.Name] = &o
	}
	return out
}

// parseCommandLine finds the bidikit subcommand args name and parses its
// flags, as the binary would.
func parseCommandLine(args []string) *cobra.Command {
	root := &cobra.Command{Use: "bidikit"}
	root.AddCommand(newRunCmd(), newReportCmd())
	cmd, rest, err := root.Find(args)
	Expect(err).NotTo(HaveOccurred(), "%v", args)
	Expect(cmd).NotTo(Equal(root), "%v names no subcommand", args)
	Expect(cmd.ParseFlags(rest)).To(Succeed(), "%v", args)
	Expect(cmd.ValidateArgs(cmd.Flags().Args())).To(Succeed(), "%v", args)
	return cmd
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

var _ = Describe("deploy/kubernetes", func() {
	It("holds a ConfigMap, a PVC, an Indexed shards Job and a merge Job that fit together", func() {
		m := loadManifests()
		cm := m["ConfigMap/bidikit-scenario"]
		Expect(cm).NotTo(BeNil())
		Expect(m).To(HaveKey("PersistentVolumeClaim/bidikit-results"))
		shards, merge := m["Job/bidikit-shards"], m["Job/bidikit-merge"]
		Expect(shards).NotTo(BeNil())
		Expect(merge).NotTo(BeNil())

		// The scenario is a valid one.
		Expect(cm.Data).To(HaveKey("scenario.yaml"))
		_, err := scenario.Parse("configmap scenario.yaml", []byte(cm.Data["scenario.yaml"]))
		Expect(err).NotTo(HaveOccurred())

		// Indexed, all shards at once.
		Expect(shards.Spec.CompletionMode).To(Equal("Indexed"))
		Expect(shards.Spec.Completions).NotTo(BeNil())
		Expect(shards.Spec.Parallelism).To(Equal(shards.Spec.Completions))
		n := *shards.Spec.Completions

		for _, job := range []*k8sObject{shards, merge} {
			ps := job.Spec.Template.Spec
			Expect(ps.RestartPolicy).To(Equal("Never"))
			vols := map[string]bool{}
			for _, v := range ps.Volumes {
				vols[v.Name] = true
				if v.ConfigMap != nil {
					Expect(m).To(HaveKey("ConfigMap/"+v.ConfigMap.Name), "volume %s", v.Name)
				}
				if v.PersistentVolumeClaim != nil {
					Expect(m).To(HaveKey("PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName), "volume %s", v.Name)
				}
			}
			Expect(ps.Containers).To(HaveLen(1))
			c := ps.Containers[0]
			Expect(c.Command).To(Equal([]string{"bidikit"}))
			for _, vm := range c.VolumeMounts {
				Expect(vols).To(HaveKey(vm.Name), "mount %s", vm.MountPath)
			}
			// Every $(VAR) the arguments use is declared in env.
			declared := map[string]bool{}
			for _, e := range c.Env {
				declared[e.Name] = true
			}
			for _, a := range c.Args {
				for _, ref := range varRef.FindAllStringSubmatch(a, -1) {
					Expect(declared).To(HaveKey(ref[1]), "argument %q", a)
				}
			}
		}

		// The shard command line: real flags, the index from the Job's
		// completion index, the count equal to completions.
		sc := shards.Spec.Template.Spec.Containers[0]
		run := parseCommandLine(sc.Args)
		Expect(run.Name()).To(Equal("run"))
		fl := run.Flags()
		env, _ := fl.GetString("shard-index-env")
		count, _ := fl.GetInt("shard-count")
		target, _ := fl.GetString("target")
		rawOut, _ := fl.GetString("raw-out")
		Expect(count).To(Equal(n))
		Expect(target).NotTo(BeEmpty())
		var indexFrom string
		for _, e := range sc.Env {
			if e.Name == env && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				indexFrom = e.ValueFrom.FieldRef.FieldPath
			}
		}
		Expect(indexFrom).To(Equal("metadata.annotations['batch.kubernetes.io/job-completion-index']"))
		f := runFlags{shardIndexEnv: env, shardCount: count}
		for k := range n {
			i, c, err := f.shardFlags(func(string) string { return strconv.Itoa(k) })
			Expect(err).NotTo(HaveOccurred())
			Expect([]int{i, c}).To(Equal([]int{k, n}))
		}
		// The scenario argument is the ConfigMap's file where it is mounted.
		scenarioPath := run.Flags().Arg(0)
		for _, vm := range sc.VolumeMounts {
			if vm.Name == "scenario" {
				Expect(scenarioPath).To(Equal(vm.MountPath + "/scenario.yaml"))
			}
		}

		// The merge command line names every shard's file, once.
		mc := merge.Spec.Template.Spec.Containers[0]
		mcmd := parseCommandLine(mc.Args)
		Expect(mcmd.CommandPath()).To(Equal("bidikit report merge"))
		var want []string
		for k := range n {
			want = append(want, strings.ReplaceAll(rawOut, "$("+env+")", fmt.Sprint(k)))
		}
		Expect(mcmd.Flags().Args()).To(Equal(want))
	})
})
