package ot_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestOT(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ot")
}
