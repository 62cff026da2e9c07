/* File behaviour: stdio on files (fopen modes, fprintf, fgets, fread, fseek/ftell, fileno + fsync, fdopen, getline) and mkstemp. */
#include "ft.h"

int main(int argc, char **argv)
{
	char line[256], tmpl[4200];
	char *gl = NULL;
	size_t glen = 0;
	struct stat st;
	FILE *f;
	int fd, n;

	ft_init(argc, argv, 60);

	f = fopen(ft_path("t.txt"), "w");
	ft_ok("fopen w", f ? 0 : -1);
	for (int i = 0; i < 500; i++)
		fprintf(f, "line %d: %s\n", i, i % 3 ? "some text" : "other");
	ft_val("ftell after 500 lines", ftell(f));
	ft_ok("fflush", fflush(f));
	ft_ok("fsync(fileno)", fsync(fileno(f)));
	ft_ok("fclose", fclose(f));
	ft_show_file("t.txt", ft_path("t.txt"));

	f = fopen(ft_path("t.txt"), "r");
	ft_ok("fopen r", f ? 0 : -1);
	n = 0;
	while (fgets(line, sizeof(line), f))
		n++;
	ft_say("fgets lines: %d, feof: %s, ferror: %s", n, ft_yn(feof(f)), ft_yn(ferror(f)));
	ft_ok("fseek 100 SEEK_SET", fseek(f, 100, SEEK_SET));
	ft_say("fgets at 100: %s", fgets(line, sizeof(line), f) ? line : "(null)\n");
	ft_ok("fseek -20 SEEK_END", fseek(f, -20, SEEK_END));
	ft_val("ftell", ftell(f));
	ft_val("fread 100 (short at EOF)", (long)fread(line, 1, 100, f));
	rewind(f);
	ft_val("getline after rewind", getline(&gl, &glen, f));
	ft_say("first line: %s", gl ? gl : "(null)\n");
	ft_val("fputs on a read-only stream", fputs("x", f) == EOF ? -1 : 0);
	fclose(f);

	f = fopen(ft_path("t.txt"), "a");
	ft_ok("fopen a", f ? 0 : -1);
	ft_ok("fseek 0 (ignored for appends)", fseek(f, 0, SEEK_SET));
	fprintf(f, "appended\n");
	fclose(f);
	f = fopen(ft_path("t.txt"), "r+");
	ft_ok("fopen r+", f ? 0 : -1);
	fputs("LINE", f);
	ft_ok("fseek 0 SEEK_END", fseek(f, 0, SEEK_END));
	ft_val("ftell at end", ftell(f));
	fclose(f);
	ft_show_file("t.txt after a, r+", ft_path("t.txt"));
	f = fopen(ft_path("t.txt"), "w+");
	fputs("short", f);
	rewind(f);
	ft_say("w+ truncated and read back: %s", fgets(line, sizeof(line), f) ? line : "(null)");
	fclose(f);
	f = fopen(ft_path("t.txt"), "wx");
	ft_ok("fopen wx existing", f ? 0 : -1);
	if (f)
		fclose(f);
	f = fopen(ft_path("missing"), "r");
	ft_ok("fopen r missing", f ? 0 : -1);
	f = fopen(ft_dir, "w");
	ft_ok("fopen w a directory", f ? 0 : -1);

	fd = open(ft_path("fd.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	f = fdopen(fd, "w+");
	ft_ok("fdopen", f ? 0 : -1);
	fprintf(f, "%s %d %.3f\n", "fdopen", 42, 3.25);
	ft_ok("fclose (closes the fd)", fclose(f));
	ft_ok("close the fd again", close(fd));
	ft_show_file("fd.txt", ft_path("fd.txt"));
	/* A big write through stdio's buffer. */
	f = fopen(ft_path("big"), "w");
	for (int i = 0; i < 100000; i++)
		fputc('a' + i % 26, f);
	fclose(f);
	ft_show_file("big", ft_path("big"));

	/* mkstemp: a new 0600 file with a unique name. */
	snprintf(tmpl, sizeof(tmpl), "%s", ft_path("tmpXXXXXX"));
	fd = mkstemp(tmpl);
	ft_ok("mkstemp", fd);
	ft_say("template replaced: %s", ft_yn(!strstr(tmpl, "XXXXXX")));
	ft_ok("fstat", fstat(fd, &st));
	ft_say("mkstemp file: mode=%04o size=%lld", (unsigned)(st.st_mode & 07777), (long long)st.st_size);
	ft_val("write 4", write(fd, "temp", 4));
	close(fd);
	ft_show_stat("stat by the returned name", tmpl, 0);
	ft_ok("unlink it", unlink(tmpl));
	snprintf(tmpl, sizeof(tmpl), "%s", ft_path("badXXXX"));
	ft_ok("mkstemp bad template", mkstemp(tmpl));
	snprintf(tmpl, sizeof(tmpl), "%s", ft_path("missing/tmpXXXXXX"));
	ft_ok("mkstemp in a missing dir", mkstemp(tmpl));
	ft_show_dir("dir", ft_dir);
	free(gl);
	return 0;
}
