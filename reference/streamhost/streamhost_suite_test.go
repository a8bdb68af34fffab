package streamhost_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestStreamhost(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "reference/streamhost")
}
