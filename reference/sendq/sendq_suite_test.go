package sendq_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestSendq(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sendq")
}
