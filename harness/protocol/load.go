package protocol

import (
	"context"
	"errors"

	"google.golang.org/grpc"
)

// LoadDescriptors gets the descriptors s names: its protoset, its .proto
// sources (paths relative to the spec's file; import paths default to its
// folder), or, by default, server
// reflection over conn (target names the server in messages). conn may be
// nil when s names a file source; with reflection it is required. Errors
// name the spec's file, line and column.
func LoadDescriptors(ctx context.Context, s *Spec, conn grpc.ClientConnInterface, target string) (*Descriptors, error) {
	ds := s.Descriptors
	switch {
	case ds.Protoset.Value != "":
		d, err := LoadProtoset(s.resolve(ds.Protoset.Value))
		if err != nil {
			return nil, ds.Protoset.errorf(s.File, 0, "%v", err)
		}
		return d, nil
	case len(ds.ProtoFiles) > 0:
		var files, paths []string
		for _, f := range ds.ProtoFiles {
			files = append(files, s.resolve(f.Value))
		}
		for _, p := range ds.ImportPaths {
			paths = append(paths, s.resolve(p.Value))
		}
		if len(paths) == 0 {
			paths = []string{s.Dir}
		}
		d, err := CompileProtos(ctx, paths, files)
		if err != nil {
			return nil, ds.ProtoFiles[0].errorf(s.File, 0, "%v", err)
		}
		return d, nil
	}
	if conn == nil {
		return nil, s.Method.errorf(s.File, 0, "%v", errors.New("descriptors come from server reflection, and no connection to a server was given"))
	}
	svc, _, ok := splitMethod(s.Method.Value)
	if !ok {
		_, err := (&Descriptors{}).Method(s.Method.Value)
		return nil, s.Method.errorf(s.File, 0, "%v", err)
	}
	d, err := Reflect(ctx, conn, target, svc)
	if err != nil {
		return nil, s.Method.errorf(s.File, 0, "%v", err)
	}
	return d, nil
}
