/*
 * bench/memfloor.c - the least a restore into the memory backend can cost:
 * writing as many bytes as the restored state takes into fresh shared
 * memory, as the worker does into the DSA area of PostgreSQL's main shared
 * memory segment after a restart.
 *
 *   memfloor BYTES HUGE        (HUGE 1: MAP_HUGETLB, as huge_pages = on)
 *
 * Prints "FLOOR first_ms again_ms": the first write of the fresh mapping
 * (the kernel's page faults and zeroing included, as a restore pays them),
 * then a second write of the same memory (no faults: only the stores).
 * Built and run by bench/checkpoint.sh; nothing of stream_state in it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	size_t		bytes;
	int			huge;
	char	   *p;
	double		t0,
				t1,
				t2;

	if (argc != 3)
	{
		fprintf(stderr, "usage: memfloor BYTES HUGE\n");
		return 2;
	}
	bytes = strtoull(argv[1], NULL, 10);
	huge = atoi(argv[2]);
	if (huge)
		bytes = (bytes + (2 << 20) - 1) & ~(size_t) ((2 << 20) - 1);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
	if (p == MAP_FAILED)
	{
		perror("memfloor: mmap");
		return 1;
	}
	t0 = now_ms();
	memset(p, 1, bytes);
	t1 = now_ms();
	memset(p, 2, bytes);
	t2 = now_ms();
	printf("FLOOR %.1f %.1f\n", t1 - t0, t2 - t1);
	munmap(p, bytes);
	return 0;
}
