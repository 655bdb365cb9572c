module trace-stack/tools/pause

go 1.24
