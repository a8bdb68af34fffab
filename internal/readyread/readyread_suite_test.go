package readyread_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestReadyread(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "readyread")
}
