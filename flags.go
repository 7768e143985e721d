package checkpoint

import "flag"

// AddFlags registers the two flags that seed 004's users know on fs, and
// returns a function that turns them into options once fs is parsed:
//
//	-no-checkpoint     run everything; read and write no checkpoint (WithDisabled)
//	-reset-checkpoint  start from zero, moving the old files to a backup
//	                   folder first (WithFresh and WithBackup)
//
// With neither flag it returns no options; with both, -no-checkpoint wins
// and nothing is moved. The flag package accepts them with one dash or two.
func AddFlags(fs *flag.FlagSet) func() []Option {
	off := fs.Bool("no-checkpoint", false, "run every item; read and write no checkpoint")
	reset := fs.Bool("reset-checkpoint", false, "start from zero; the old checkpoint is moved to a .bak-<time> folder")
	return func() []Option {
		switch {
		case *off:
			return []Option{WithDisabled()}
		case *reset:
			return []Option{WithFresh(), WithBackup()}
		}
		return nil
	}
}
