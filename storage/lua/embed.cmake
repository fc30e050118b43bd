# Turns storage/lua/*.lua into C strings (run by the build: cmake -P).
# In: DIR (the .lua folder), OUT (the .c file), NAMES (comma-separated).
set(body "/* Generated from the scripts in storage/lua/ by embed.cmake: do not edit. */\n")
string(REPLACE "," ";" names "${NAMES}")
foreach(name ${names})
  file(READ ${DIR}/${name}.lua hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${hex}")
  string(APPEND body "const char redis_lua_${name}[] = \"${escaped}\";\n")
endforeach()
file(WRITE ${OUT} "${body}")
