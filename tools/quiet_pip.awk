# Drops pip output that is known to be harmless for deepbatch's set-up; every other line passes.
# 1. find-links / index locations that do not exist on some machines
/is ignored: it is neither a file nor a directory/ { next }
# 2. the resolver's note on torch's setuptools pin: torch and the rest are installed in two steps
#    on purpose (petastorm needs setuptools<70); the header is kept if any other conflict follows
/^ERROR: pip's dependency resolver does not currently take into account all the packages/ { held = $0; next }
/^torch [^ ]+ requires setuptools>=[0-9.]+, but you have setuptools [0-9.]+ which is incompatible\.$/ { next }
# 3. setuptools' generic banner for every editable install
/BuildBackendWarning: Editable installation\./ { skip = 1 }
skip { if (/with strategy, WheelFile/) skip = 0; next }
{ if (held != "" && / which is incompatible\.$/) print held; held = ""; print }
