package threshold_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestThreshold(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "threshold")
}
