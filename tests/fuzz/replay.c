// replay.c: runs LLVMFuzzerTestOneInput over every file in the directories
// (or the files) named on the command line, so that ctest replays the fuzz
// corpus and the golden bad inputs in every build, without libFuzzer. It
// checks only that nothing crashes; the sanitizer builds also catch leaks
// and overreads. Each input gets a buffer of exactly its size, so ASan sees
// a read one byte past the end. Exit status: 0, or 1 if a path could not
// be read.

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
	FILE    *fp;
	uint8_t *buf;
	long     n;

	if ((fp = fopen(path, "rb")) == NULL) {
		perror(path);
		return (-1);
	}
	if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET) != 0) {
		perror(path);
		fclose(fp);
		return (-1);
	}
	// malloc(0) may return NULL; one spare byte keeps that case simple
	// while ASan still flags reads past n.
	if ((buf = malloc((size_t) n + 1)) == NULL ||
	    fread(buf, 1, (size_t) n, fp) != (size_t) n) {
		fprintf(stderr, "%s: cannot read\n", path);
		free(buf);
		fclose(fp);
		return (-1);
	}
	fclose(fp);
	LLVMFuzzerTestOneInput(buf, (size_t) n);
	free(buf);
	return (0);
}

static int
replay_dir(const char *dir, int *countp)
{
	DIR           *d;
	struct dirent *de;
	int            rv = 0;

	if ((d = opendir(dir)) == NULL) {
		perror(dir);
		return (-1);
	}
	while ((de = readdir(d)) != NULL) {
		char        path[4096];
		struct stat st;

		if (de->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			continue;
		}
		if (replay_file(path) != 0) {
			rv = -1;
		}
		(*countp)++;
	}
	closedir(d);
	return (rv);
}

int
main(int argc, char **argv)
{
	int count = 0;
	int rv    = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) != 0) {
			perror(argv[i]);
			rv = 1;
		} else if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i], &count) != 0) {
				rv = 1;
			}
		} else {
			if (replay_file(argv[i]) != 0) {
				rv = 1;
			}
			count++;
		}
	}
	printf("replayed %d inputs\n", count);
	return (rv);
}
