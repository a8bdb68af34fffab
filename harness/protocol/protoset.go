package protocol

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// LoadProtoset reads a protoset file (a serialized
// google.protobuf.FileDescriptorSet, as `protoc --descriptor_set_out
// --include_imports` or `buf build -o x.protoset` write it). Imports missing
// from the set are taken from the well-known types compiled into bidikit.
func LoadProtoset(path string) (*Descriptors, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("protoset: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("protoset %s: not a google.protobuf.FileDescriptorSet: %w", path, err)
	}
	return FromFileDescriptorSet(&set, "protoset "+path)
}

// FromFileDescriptorSet builds Descriptors from a FileDescriptorSet; source
// names it in messages.
func FromFileDescriptorSet(set *descriptorpb.FileDescriptorSet, source string) (*Descriptors, error) {
	files, err := buildFiles(set.GetFile(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return newDescriptors(files, source, nil), nil
}

// missingFile fetches a file that a set imports but does not hold (server
// reflection asks the server); nil, or an error, falls back to the
// well-known types.
type missingFile func(path string) (*descriptorpb.FileDescriptorProto, error)

// maxFiles bounds the files one descriptor set may pull in.
const maxFiles = 2000

// buildFiles links file descriptor protos in dependency order, whatever
// order they come in. An import not in fdps is asked of fetch (when not nil),
// then looked up among the well-known types compiled into this binary.
func buildFiles(fdps []*descriptorpb.FileDescriptorProto, fetch missingFile) (*protoregistry.Files, error) {
	byName := make(map[string]*descriptorpb.FileDescriptorProto, len(fdps))
	var order []string
	for _, f := range fdps {
		if _, dup := byName[f.GetName()]; !dup {
			order = append(order, f.GetName())
		}
		byName[f.GetName()] = f
	}
	files := new(protoregistry.Files)
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, importer string) error
	visit = func(name, importer string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("import cycle through %s", name)
		case 2:
			return nil
		}
		if len(state) > maxFiles {
			return fmt.Errorf("more than %d files", maxFiles)
		}
		state[name] = 1
		fdp, ok := byName[name]
		if !ok && fetch != nil {
			got, err := fetch(name)
			if err == nil && got != nil {
				fdp, ok = got, true
				byName[name] = got
			}
		}
		if !ok {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(name)
			if err != nil {
				return fmt.Errorf("%s imports %s, which is neither in the set nor a well-known type", importer, name)
			}
			state[name] = 2
			return registerWithImports(files, fd)
		}
		for _, dep := range fdp.GetDependency() {
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		fd, err := protodesc.NewFile(fdp, files)
		if err != nil {
			return fmt.Errorf("file %s: %w", name, err)
		}
		state[name] = 2
		if err := files.RegisterFile(fd); err != nil {
			return fmt.Errorf("file %s: %w", name, err)
		}
		return nil
	}
	for _, name := range order {
		if err := visit(name, name); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// registerWithImports registers fd and, first, every file it imports
// transitively, skipping files already registered by path.
func registerWithImports(files *protoregistry.Files, fd protoreflect.FileDescriptor) error {
	if _, err := files.FindFileByPath(fd.Path()); err == nil {
		return nil
	}
	imports := fd.Imports()
	for i := 0; i < imports.Len(); i++ {
		if err := registerWithImports(files, imports.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	if err := files.RegisterFile(fd); err != nil {
		return fmt.Errorf("file %s: %w", fd.Path(), err)
	}
	return nil
}
