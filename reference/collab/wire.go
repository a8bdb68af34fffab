package collab

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// FromProto converts a wire operation to a normalised ot.Op. Zero-length
// components are dropped; a component without a kind or with invalid UTF-8
// is an error naming its index.
func FromProto(p *collabv1.Operation) (ot.Op, error) {
	cs := p.GetComponents()
	o := make(ot.Op, 0, len(cs))
	for i, c := range cs {
		switch k := c.GetKind().(type) {
		case *collabv1.Component_Retain:
			o = o.Retain(int(k.Retain))
		case *collabv1.Component_Delete:
			o = o.Delete(int(k.Delete))
		case *collabv1.Component_Insert:
			if !utf8.ValidString(k.Insert) {
				return nil, fmt.Errorf("component %d: insert is not valid UTF-8", i)
			}
			o = o.Insert(k.Insert)
		default:
			return nil, fmt.Errorf("component %d has no kind (want retain, insert or delete)", i)
		}
	}
	return o, nil
}

// ToProto converts an op to its wire form. Lengths above MaxUint32 are split
// over several components.
func ToProto(o ot.Op) *collabv1.Operation {
	out := &collabv1.Operation{Components: make([]*collabv1.Component, 0, len(o))}
	for _, c := range o {
		switch c.Kind {
		case ot.Insert:
			out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Insert{Insert: c.Text}})
		case ot.Retain, ot.Delete:
			for n := c.N; n > 0; {
				k := uint32(min(n, math.MaxUint32))
				n -= int(k)
				if c.Kind == ot.Retain {
					out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Retain{Retain: k}})
				} else {
					out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Delete{Delete: k}})
				}
			}
		}
	}
	return out
}
