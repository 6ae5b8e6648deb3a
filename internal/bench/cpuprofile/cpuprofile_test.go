package cpuprofile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStart(t *testing.T) {
	stop, err := Start("")
	require.NoError(t, err)
	stop()

	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err = Start(path)
	require.NoError(t, err)
	stop()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Positive(t, st.Size(), "a profile was written")

	_, err = Start(filepath.Join(t.TempDir(), "missing", "cpu.pprof"))
	require.Error(t, err)
}
