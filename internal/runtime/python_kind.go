package runtime

// addPython registers the python runtime. Until its bootstrap lands this
// build knows only nodejs.
func (l *Launcher) addPython() error { return nil }
